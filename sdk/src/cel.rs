//! Santa CEL v1 expressions (`cel_expr` of a `CEL` rule), checked before they can reach a
//! client: parsed with the `cel` crate (the official CEL grammar, so syntax errors read as
//! cel-go's and cel-cpp's do) and type-checked here against what santad declares
//! (`santa.cel.v1`, reference `santa-cel-v1.md`): the variables `target`, `args`, `envs`, `euid`,
//! `cwd`, `path`, the `ReturnValue` constants, CEL's standard functions and macros. The result
//! must be a bool or a v1 `ReturnValue`.
//!
//! NPS 2025.6–2025.11 fail the whole rule-download stage when one expression does not
//! compile, so this errs on the side of refusing: what santad's checker would refuse must
//! never pass here. Only in the `cel` feature (the server); plugins don't carry the parser.

use cel::common::ast::{ComprehensionExpr, EntryExpr, Expr, IdedExpr, LiteralValue, SourceInfo, operators};
use std::fmt;

/// Deepest expression nesting accepted (parser and checker recurse over it).
pub const MAX_CEL_DEPTH: usize = 96;

/// Why an expression does not compile in santad, and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct CelError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// Parses and type-checks `expr` as a Santa CEL v1 rule expression.
pub fn check(expr: &str) -> Result<(), CelError> {
    let parser = cel::parser::Parser::new().max_recursion_depth(MAX_CEL_DEPTH as u16);
    // Input from outside must not take a request (or a plugin's preflight) down with it,
    // should the parser ever panic on it.
    // Nothing the closure touches is observed after a panic, so unwind safety holds.
    let parse = std::panic::AssertUnwindSafe(|| parser.parse_with_source_info(expr));
    let parsed = std::panic::catch_unwind(parse).map_err(|_| CelError {
        line: 1,
        column: 1,
        message: "the CEL parser failed on this expression; simplify it".into(),
    })?;
    let (ast, info) = parsed.map_err(parse_error)?;
    let mut checker = Checker { info: &info, scopes: Vec::new() };
    match checker.expr(&ast, 0)? {
        Ty::Bool => Ok(()),
        Ty::Int => checker.check_return_values(&ast),
        // santad accepts only a bool or a ReturnValue result, known when it compiles.
        Ty::Dyn => Err(checker.error(
            ast.id,
            "the expression's type is only known when it runs (dyn); make it give a bool, e.g. `… == true`",
        )),
        other => Err(checker.error(
            ast.id,
            format!(
                "the expression gives {other}; it must give a bool (true allows) or a ReturnValue such as BLOCKLIST"
            ),
        )),
    }
}

fn parse_error(errors: cel::ParseErrors) -> CelError {
    let Some(first) = errors.errors.into_iter().next() else {
        return CelError { line: 1, column: 1, message: "syntax error".into() };
    };
    // Errors raised while expanding a macro may carry no position of their own.
    let (line, column) = match first.pos {
        (line, column) if line > 0 && column > 0 => (line as usize, column as usize),
        _ => (1, 1),
    };
    let message = if first.msg.contains("Recursion limit") {
        format!("the expression nests deeper than {MAX_CEL_DEPTH} levels")
    } else {
        match first.msg.strip_prefix("Syntax error: ") {
            Some(rest) => format!("syntax error: {rest}"),
            None => first.msg,
        }
    };
    CelError { line, column, message: truncate(&message, 300) }
}

fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(max_chars).collect::<String>())
    }
}

// ---- types --------------------------------------------------------------------------------

/// A CEL type as far as Santa's environment needs one.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ty {
    Bool,
    Int,
    Uint,
    Double,
    String,
    Bytes,
    Null,
    Timestamp,
    Duration,
    List(Box<Ty>),
    Map(Box<Ty>, Box<Ty>),
    /// `santa.cel.v1.ExecutableFile`, the type of `target`.
    ExecutableFile,
    /// A type value (`int`, `type(x)`).
    Type,
    /// Unknown until evaluation: assignable to and from everything.
    Dyn,
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ty::Bool => f.write_str("bool"),
            Ty::Int => f.write_str("int"),
            Ty::Uint => f.write_str("uint"),
            Ty::Double => f.write_str("double"),
            Ty::String => f.write_str("string"),
            Ty::Bytes => f.write_str("bytes"),
            Ty::Null => f.write_str("null_type"),
            Ty::Timestamp => f.write_str("google.protobuf.Timestamp"),
            Ty::Duration => f.write_str("google.protobuf.Duration"),
            Ty::List(e) => write!(f, "list({e})"),
            Ty::Map(k, v) => write!(f, "map({k}, {v})"),
            Ty::ExecutableFile => f.write_str("santa.cel.v1.ExecutableFile"),
            Ty::Type => f.write_str("type"),
            Ty::Dyn => f.write_str("dyn"),
        }
    }
}

/// The most specific type both `a` and `b` are assignable to, if they are compatible.
fn join(a: &Ty, b: &Ty) -> Option<Ty> {
    match (a, b) {
        _ if a == b => Some(a.clone()),
        (Ty::Dyn, _) | (_, Ty::Dyn) => Some(Ty::Dyn),
        (Ty::List(x), Ty::List(y)) => Some(Ty::List(Box::new(join(x, y)?))),
        (Ty::Map(k1, v1), Ty::Map(k2, v2)) => Some(Ty::Map(Box::new(join(k1, k2)?), Box::new(join(v1, v2)?))),
        (Ty::Null, Ty::ExecutableFile) | (Ty::ExecutableFile, Ty::Null) => Some(Ty::ExecutableFile),
        _ => None,
    }
}

// ---- Santa's environment (reference santa-cel-v1.md) ---------------------------------------

/// The fields of `santa.cel.v1.ExecutableFile` usable in CEL v1.
const EXECUTABLE_FILE_FIELDS: [(&str, Ty); 5] = [
    ("signing_time", Ty::Timestamp),
    ("secure_signing_time", Ty::Timestamp),
    ("signing_id", Ty::String),
    ("is_platform_binary", Ty::Bool),
    ("team_id", Ty::String),
];

/// The v1 `ReturnValue` constants, usable as bare identifiers.
const RETURN_VALUES: [(&str, i64); 6] = [
    ("ALLOWLIST", 1),
    ("ALLOWLIST_COMPILER", 2),
    ("BLOCKLIST", 3),
    ("SILENT_BLOCKLIST", 4),
    ("SILENT_GUI_BLOCKLIST", 9),
    ("SILENT_TTY_BLOCKLIST", 10),
];

/// `ReturnValue`s that are not v1 results: why each is refused.
fn return_value_problem(v: i64) -> Option<String> {
    match v {
        _ if RETURN_VALUES.iter().any(|(_, n)| *n == v) => None,
        0 => Some("0 is UNSPECIFIED, which santad treats as an evaluation error".into()),
        5..=8 => Some(format!(
            "{v} is a CEL v2 result (REQUIRE_TOUCHID, REQUIRE_TOUCHID_ONLY, SEATBELT, AUDIT), not available to sync v1 clients"
        )),
        _ => Some(format!("{v} is not a ReturnValue (1–4, 9, 10: ALLOWLIST … SILENT_TTY_BLOCKLIST)")),
    }
}

fn variable(name: &str) -> Option<Ty> {
    Some(match name {
        "target" => Ty::ExecutableFile,
        "args" => Ty::List(Box::new(Ty::String)),
        "envs" => Ty::Map(Box::new(Ty::String), Box::new(Ty::String)),
        "euid" => Ty::Int,
        "cwd" | "path" => Ty::String,
        // Type identifiers of the standard environment (`type(x) == string`).
        "bool" | "int" | "uint" | "double" | "string" | "bytes" | "list" | "map" | "null_type" | "type" => Ty::Type,
        _ => return RETURN_VALUES.iter().any(|(n, _)| *n == name).then_some(Ty::Int),
    })
}

// ---- standard function declarations ------------------------------------------------------

/// A parameter or result type in an overload: concrete, or built from type parameters.
#[derive(Clone, Copy, Debug)]
enum P {
    Bool,
    Int,
    Uint,
    Double,
    String,
    Bytes,
    Ts,
    Dur,
    Type,
    Dyn,
    /// Type parameter `A`.
    A,
    /// Type parameter `B`.
    B,
    /// `list(A)`.
    ListA,
    /// `map(A, B)`.
    MapAB,
}

/// One overload: parameter types (the receiver first for member calls) and result.
struct Ov(&'static [P], P);

use P::{A, B, Bool, Bytes, Double, Dur, Dyn, Int, ListA, MapAB, String as Str, Ts, Uint};

const NUMERIC_CMP: &[Ov] = &[
    Ov(&[Bool, Bool], Bool),
    Ov(&[Int, Int], Bool),
    Ov(&[Uint, Uint], Bool),
    Ov(&[Double, Double], Bool),
    Ov(&[Str, Str], Bool),
    Ov(&[Bytes, Bytes], Bool),
    Ov(&[Ts, Ts], Bool),
    Ov(&[Dur, Dur], Bool),
    Ov(&[Int, Uint], Bool),
    Ov(&[Int, Double], Bool),
    Ov(&[Uint, Int], Bool),
    Ov(&[Uint, Double], Bool),
    Ov(&[Double, Int], Bool),
    Ov(&[Double, Uint], Bool),
];
const ARITH: &[Ov] = &[Ov(&[Int, Int], Int), Ov(&[Uint, Uint], Uint), Ov(&[Double, Double], Double)];
const TS_GETTER: &[Ov] = &[Ov(&[Ts], Int), Ov(&[Ts, Str], Int)];
const TS_DUR_GETTER: &[Ov] = &[Ov(&[Ts], Int), Ov(&[Ts, Str], Int), Ov(&[Dur], Int)];
const STRING_TEST: &[Ov] = &[Ov(&[Str, Str], Bool)];
const SIZE: &[Ov] = &[Ov(&[Str], Int), Ov(&[Bytes], Int), Ov(&[ListA], Int), Ov(&[MapAB], Int)];

/// Overloads of a global function or operator (cel-spec standard definitions).
fn global_overloads(name: &str) -> Option<&'static [Ov]> {
    Some(match name {
        operators::LOGICAL_NOT | operators::NOT_STRICTLY_FALSE => &[Ov(&[Bool], Bool)],
        operators::NEGATE => &[Ov(&[Int], Int), Ov(&[Double], Double)],
        operators::EQUALS | operators::NOT_EQUALS => &[Ov(&[A, A], Bool)],
        operators::LESS | operators::LESS_EQUALS | operators::GREATER | operators::GREATER_EQUALS => NUMERIC_CMP,
        operators::ADD => &[
            Ov(&[Int, Int], Int),
            Ov(&[Uint, Uint], Uint),
            Ov(&[Double, Double], Double),
            Ov(&[Str, Str], Str),
            Ov(&[Bytes, Bytes], Bytes),
            Ov(&[ListA, ListA], ListA),
            Ov(&[Ts, Dur], Ts),
            Ov(&[Dur, Ts], Ts),
            Ov(&[Dur, Dur], Dur),
        ],
        operators::SUBSTRACT => &[
            Ov(&[Int, Int], Int),
            Ov(&[Uint, Uint], Uint),
            Ov(&[Double, Double], Double),
            Ov(&[Ts, Ts], Dur),
            Ov(&[Ts, Dur], Ts),
            Ov(&[Dur, Dur], Dur),
        ],
        operators::MULTIPLY | operators::DIVIDE => ARITH,
        operators::MODULO => &[Ov(&[Int, Int], Int), Ov(&[Uint, Uint], Uint)],
        operators::INDEX => &[Ov(&[ListA, Int], A), Ov(&[MapAB, A], B)],
        operators::IN => &[Ov(&[A, ListA], Bool), Ov(&[A, MapAB], Bool)],
        "size" => SIZE,
        "matches" => STRING_TEST,
        "int" => &[Ov(&[Int], Int), Ov(&[Uint], Int), Ov(&[Double], Int), Ov(&[Str], Int), Ov(&[Ts], Int)],
        "uint" => &[Ov(&[Uint], Uint), Ov(&[Int], Uint), Ov(&[Double], Uint), Ov(&[Str], Uint)],
        "double" => &[Ov(&[Double], Double), Ov(&[Int], Double), Ov(&[Uint], Double), Ov(&[Str], Double)],
        "string" => &[
            Ov(&[Str], Str),
            Ov(&[Int], Str),
            Ov(&[Uint], Str),
            Ov(&[Double], Str),
            Ov(&[Bytes], Str),
            Ov(&[Bool], Str),
            Ov(&[Ts], Str),
            Ov(&[Dur], Str),
        ],
        "bytes" => &[Ov(&[Bytes], Bytes), Ov(&[Str], Bytes)],
        "bool" => &[Ov(&[Bool], Bool), Ov(&[Str], Bool)],
        "timestamp" => &[Ov(&[Ts], Ts), Ov(&[Str], Ts), Ov(&[Int], Ts)],
        "duration" => &[Ov(&[Dur], Dur), Ov(&[Str], Dur)],
        "dyn" => &[Ov(&[A], Dyn)],
        "type" => &[Ov(&[A], P::Type)],
        _ => return None,
    })
}

/// Overloads of a member function, the receiver first.
fn member_overloads(name: &str) -> Option<&'static [Ov]> {
    Some(match name {
        "size" => SIZE,
        "contains" | "startsWith" | "endsWith" | "matches" => STRING_TEST,
        "getFullYear" | "getMonth" | "getDayOfYear" | "getDayOfMonth" | "getDate" | "getDayOfWeek" => TS_GETTER,
        "getHours" | "getMinutes" | "getSeconds" | "getMilliseconds" => TS_DUR_GETTER,
        _ => return None,
    })
}

#[derive(Default)]
struct Bindings {
    a: Option<Ty>,
    b: Option<Ty>,
}

fn bind_var(slot: &mut Option<Ty>, t: &Ty) -> bool {
    match slot {
        None => {
            *slot = Some(t.clone());
            true
        }
        Some(bound) => match join(bound, t) {
            Some(j) => {
                *slot = Some(j);
                true
            }
            None => false,
        },
    }
}

fn concrete(p: P) -> Option<Ty> {
    Some(match p {
        P::Bool => Ty::Bool,
        P::Int => Ty::Int,
        P::Uint => Ty::Uint,
        P::Double => Ty::Double,
        P::String => Ty::String,
        P::Bytes => Ty::Bytes,
        P::Ts => Ty::Timestamp,
        P::Dur => Ty::Duration,
        P::Type => Ty::Type,
        P::Dyn => Ty::Dyn,
        P::A | P::B | P::ListA | P::MapAB => return None,
    })
}

fn bind(p: P, t: &Ty, b: &mut Bindings) -> bool {
    match (p, t) {
        (P::A, _) => bind_var(&mut b.a, t),
        (P::B, _) => bind_var(&mut b.b, t),
        (P::ListA, Ty::List(e)) => bind_var(&mut b.a, e),
        (P::MapAB, Ty::Map(k, v)) => bind_var(&mut b.a, k) && bind_var(&mut b.b, v),
        (P::ListA | P::MapAB, Ty::Dyn) => true,
        (P::ListA | P::MapAB, _) => false,
        (P::Dyn, _) | (_, Ty::Dyn) => true,
        (p, t) => concrete(p).as_ref() == Some(t),
    }
}

fn result(p: P, b: &Bindings) -> Ty {
    let var = |v: &Option<Ty>| v.clone().unwrap_or(Ty::Dyn);
    match p {
        P::A => var(&b.a),
        P::B => var(&b.b),
        P::ListA => Ty::List(Box::new(var(&b.a))),
        P::MapAB => Ty::Map(Box::new(var(&b.a)), Box::new(var(&b.b))),
        p => concrete(p).unwrap_or(Ty::Dyn),
    }
}

/// The result type of the overloads of `ovs` that accept `args`, if any does.
fn resolve(ovs: &[Ov], args: &[Ty]) -> Option<Ty> {
    let mut out: Option<Ty> = None;
    for Ov(params, res) in ovs {
        if params.len() != args.len() {
            continue;
        }
        let mut b = Bindings::default();
        if params.iter().zip(args).all(|(p, t)| bind(*p, t, &mut b)) {
            let r = result(*res, &b);
            out = Some(match out {
                None => r,
                Some(prev) if prev == r => prev,
                Some(_) => Ty::Dyn,
            });
        }
    }
    out
}

fn type_list(args: &[Ty]) -> String {
    args.iter().map(Ty::to_string).collect::<Vec<_>>().join(", ")
}

// ---- the checker --------------------------------------------------------------------------

struct Checker<'a> {
    info: &'a SourceInfo,
    /// Comprehension variables in scope, innermost last.
    scopes: Vec<(String, Ty)>,
}

impl Checker<'_> {
    fn error(&self, id: u64, message: impl Into<String>) -> CelError {
        let (line, column) = self.position(id);
        CelError { line, column, message: message.into() }
    }

    /// 1-based line and column (characters) of expression `id`.
    fn position(&self, id: u64) -> (usize, usize) {
        let Some((start, _)) = self.info.offset_for(id) else { return (1, 1) };
        let source = self.info.source.as_str();
        // Offsets count bytes.
        let mut start = (start as usize).min(source.len());
        while !source.is_char_boundary(start) {
            start -= 1;
        }
        let before = &source[..start];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        (line, column)
    }

    fn lookup(&self, name: &str) -> Option<Ty> {
        match self.scopes.iter().rev().find(|(n, _)| n == name) {
            Some((_, t)) => Some(t.clone()),
            None => variable(name),
        }
    }

    /// The type of `e`, or the first error in it.
    fn expr(&mut self, e: &IdedExpr, depth: usize) -> Result<Ty, CelError> {
        if depth > MAX_CEL_DEPTH {
            return Err(self.error(e.id, format!("the expression nests deeper than {MAX_CEL_DEPTH} levels")));
        }
        let depth = depth + 1;
        match &e.expr {
            Expr::Unspecified => Err(self.error(e.id, "incomplete expression")),
            Expr::Literal(l) => Ok(match l {
                LiteralValue::Boolean(_) => Ty::Bool,
                LiteralValue::Bytes(_) => Ty::Bytes,
                LiteralValue::Double(_) => Ty::Double,
                LiteralValue::Int(_) => Ty::Int,
                LiteralValue::Null => Ty::Null,
                LiteralValue::String(_) => Ty::String,
                LiteralValue::UInt(_) => Ty::Uint,
            }),
            Expr::Ident(name) => self.lookup(name).ok_or_else(|| {
                self.error(e.id, format!("undeclared reference to '{name}' (Santa offers target, args, envs, euid, cwd, path and the ReturnValue names such as ALLOWLIST)"))
            }),
            Expr::Select(s) => {
                let operand = self.expr(&s.operand, depth)?;
                let ty = match &operand {
                    Ty::ExecutableFile => EXECUTABLE_FILE_FIELDS
                        .iter()
                        .find(|(f, _)| *f == s.field)
                        .map(|(_, t)| t.clone())
                        .ok_or_else(|| {
                            let fields: Vec<&str> = EXECUTABLE_FILE_FIELDS.iter().map(|(f, _)| *f).collect();
                            self.error(e.id, format!("{operand} has no field '{}' (its fields: {})", s.field, fields.join(", ")))
                        })?,
                    Ty::Map(k, v) if matches!(**k, Ty::String | Ty::Dyn) => (**v).clone(),
                    Ty::Dyn => Ty::Dyn,
                    other => return Err(self.error(e.id, format!("type {other} has no fields (selecting '{}')", s.field))),
                };
                Ok(if s.test { Ty::Bool } else { ty })
            }
            Expr::Call(call) => {
                let mut args = Vec::with_capacity(call.args.len() + 1);
                if let Some(target) = &call.target {
                    args.push(self.expr(target, depth)?);
                }
                for a in &call.args {
                    args.push(self.expr(a, depth)?);
                }
                let name = call.func_name.as_str();
                if matches!(name, operators::LOGICAL_AND | operators::LOGICAL_OR) && call.target.is_none() {
                    return match args.iter().position(|t| !matches!(t, Ty::Bool | Ty::Dyn)) {
                        None if args.len() >= 2 => Ok(Ty::Bool),
                        Some(i) => Err(self.error(call.args[i].id, format!("operands of && and || must be bool, not {}", args[i]))),
                        None => Err(self.error(e.id, "&& and || need two operands")),
                    };
                }
                if name == operators::CONDITIONAL && call.target.is_none() {
                    return match args.as_slice() {
                        [c, t, f] => {
                            if !matches!(c, Ty::Bool | Ty::Dyn) {
                                return Err(self.error(call.args[0].id, format!("the condition of ?: must be bool, not {c}")));
                            }
                            join(t, f).ok_or_else(|| {
                                self.error(e.id, format!("the branches of ?: have different types ({t} and {f})"))
                            })
                        }
                        _ => Err(self.error(e.id, "?: needs three operands")),
                    };
                }
                let ovs = if call.target.is_some() { member_overloads(name) } else { global_overloads(name) };
                let Some(ovs) = ovs else {
                    let other_style = if call.target.is_some() { global_overloads(name) } else { member_overloads(name) };
                    return Err(self.error(
                        e.id,
                        match other_style {
                            Some(_) if call.target.is_some() => format!("'{name}' is not a member function: call it as {name}(…)"),
                            Some(_) => format!("'{name}' is a member function: call it as x.{name}(…)"),
                            None => format!("undeclared function '{name}' (not in CEL's standard library or Santa's environment)"),
                        },
                    ));
                };
                if call.target.is_none()
                    && let [arg] = call.args.as_slice()
                    && let Expr::Literal(LiteralValue::String(text)) = &arg.expr
                {
                    let problem = match name {
                        "timestamp" => timestamp_problem(text),
                        "duration" => duration_problem(text),
                        _ => None,
                    };
                    if let Some(problem) = problem {
                        return Err(self.error(arg.id, format!("{name}('{}') {problem}", truncate(text, 60))));
                    }
                }
                resolve(ovs, &args).ok_or_else(|| {
                    let shown = display_name(name);
                    let message = if call.target.is_some() {
                        let receiver = &args[0];
                        format!("no matching overload for '{shown}' on {receiver} with arguments ({})", type_list(&args[1..]))
                    } else {
                        format!("no matching overload for '{shown}' applied to ({})", type_list(&args))
                    };
                    self.error(e.id, message)
                })
            }
            Expr::List(list) => {
                if !list.optional_indices.is_empty() {
                    return Err(self.error(e.id, "optional list elements are not available in Santa's CEL"));
                }
                let mut elem: Option<Ty> = None;
                for el in &list.elements {
                    let t = self.expr(el, depth)?;
                    elem = Some(match elem {
                        None => t,
                        Some(prev) => join(&prev, &t).ok_or_else(|| {
                            self.error(el.id, format!("list elements must have one type: {t} after {prev}"))
                        })?,
                    });
                }
                Ok(Ty::List(Box::new(elem.unwrap_or(Ty::Dyn))))
            }
            Expr::Map(map) => {
                let (mut kt, mut vt): (Option<Ty>, Option<Ty>) = (None, None);
                for entry in &map.entries {
                    let EntryExpr::MapEntry(m) = &entry.expr else {
                        return Err(self.error(entry.id, "a map literal entry needs a key and a value"));
                    };
                    if m.optional {
                        return Err(self.error(entry.id, "optional map entries are not available in Santa's CEL"));
                    }
                    let k = self.expr(&m.key, depth)?;
                    if !matches!(k, Ty::Int | Ty::Uint | Ty::String | Ty::Bool | Ty::Dyn) {
                        return Err(self.error(m.key.id, format!("map keys must be int, uint, string or bool, not {k}")));
                    }
                    let v = self.expr(&m.value, depth)?;
                    for (slot, t, id, what) in [(&mut kt, k, m.key.id, "keys"), (&mut vt, v, m.value.id, "values")] {
                        *slot = Some(match slot.take() {
                            None => t,
                            Some(prev) => join(&prev, &t).ok_or_else(|| {
                                self.error(id, format!("map {what} must have one type: {t} after {prev}"))
                            })?,
                        });
                    }
                }
                Ok(Ty::Map(Box::new(kt.unwrap_or(Ty::Dyn)), Box::new(vt.unwrap_or(Ty::Dyn))))
            }
            Expr::Struct(s) => Err(self.error(
                e.id,
                format!("message construction ({}{{…}}) is not available in Santa's CEL", s.type_name),
            )),
            Expr::Comprehension(c) => self.comprehension(c, depth),
        }
    }

    fn comprehension(&mut self, c: &ComprehensionExpr, depth: usize) -> Result<Ty, CelError> {
        let range = self.expr(&c.iter_range, depth)?;
        let (first, second) = match &range {
            Ty::List(el) => match c.iter_var2 {
                None => ((**el).clone(), None),
                Some(_) => (Ty::Int, Some((**el).clone())),
            },
            Ty::Map(k, v) => ((**k).clone(), c.iter_var2.as_ref().map(|_| (**v).clone())),
            Ty::Dyn => (Ty::Dyn, c.iter_var2.as_ref().map(|_| Ty::Dyn)),
            other => {
                return Err(
                    self.error(c.iter_range.id, format!("{other} cannot be iterated (only lists and maps can)"))
                );
            }
        };
        let accu = self.expr(&c.accu_init, depth)?;
        let mark = self.scopes.len();
        self.scopes.push((c.accu_var.clone(), accu.clone()));
        self.scopes.push((c.iter_var.clone(), first));
        if let (Some(name), Some(t)) = (&c.iter_var2, second) {
            self.scopes.push((name.clone(), t));
        }
        let checked = (|| {
            let cond = self.expr(&c.loop_cond, depth)?;
            if !matches!(cond, Ty::Bool | Ty::Dyn) {
                return Err(self.error(c.loop_cond.id, format!("a loop condition must be bool, not {cond}")));
            }
            let step = self.expr(&c.loop_step, depth)?;
            let accu = join(&accu, &step).ok_or_else(|| {
                self.error(c.loop_step.id, format!("a macro step of type {step} does not fit its result"))
            })?;
            // The step may refine the accumulator (`[]` becomes `list(T)` in map()).
            self.scopes.truncate(mark);
            self.scopes.push((c.accu_var.clone(), accu));
            let res = self.expr(&c.result, depth);
            Ok(res)
        })();
        self.scopes.truncate(mark);
        checked?
    }

    /// For an int result: every constant the expression can give (a literal, a ReturnValue
    /// name, either branch of `?:`) must be a v1 ReturnValue.
    fn check_return_values(&self, e: &IdedExpr) -> Result<(), CelError> {
        let value = match &e.expr {
            Expr::Literal(LiteralValue::Int(v)) => *v.inner(),
            Expr::Call(call) if call.func_name == operators::CONDITIONAL && call.args.len() == 3 => {
                self.check_return_values(&call.args[1])?;
                return self.check_return_values(&call.args[2]);
            }
            _ => return Ok(()),
        };
        match return_value_problem(value) {
            Some(problem) => Err(self.error(e.id, format!("the expression can return {problem}"))),
            None => Ok(()),
        }
    }
}

/// An operator's spelling for messages (`_==_` → `==`).
fn display_name(name: &str) -> &str {
    match name {
        operators::IN => "in",
        operators::INDEX => "[]",
        operators::NEGATE => "-",
        operators::LOGICAL_NOT => "!",
        n if n.starts_with('_') && n.ends_with('_') && n.len() > 2 => &n[1..n.len() - 1],
        n => n,
    }
}

// ---- literal arguments santad would fail to convert ---------------------------------------

fn digits(s: &str, at: usize, n: usize) -> Option<u32> {
    let part = s.get(at..at + n)?;
    part.bytes().all(|b| b.is_ascii_digit()).then(|| part.parse().ok())?
}

/// Why `s` is not an RFC 3339 timestamp CEL accepts (`2025-05-31T00:00:00Z`), if it is not.
fn timestamp_problem(s: &str) -> Option<&'static str> {
    const FORM: &str = "is not an RFC 3339 timestamp such as 2025-05-31T00:00:00Z";
    let b = s.as_bytes();
    let sep = |at: usize, c: &[u8]| b.get(at).is_some_and(|x| c.contains(x));
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) =
        (digits(s, 0, 4), digits(s, 5, 2), digits(s, 8, 2), digits(s, 11, 2), digits(s, 14, 2), digits(s, 17, 2))
    else {
        return Some(FORM);
    };
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt") && sep(13, b":") && sep(16, b":")) {
        return Some(FORM);
    }
    let mut at = 19;
    if sep(at, b".") {
        let frac = b[at + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if frac == 0 || frac > 9 {
            return Some(FORM);
        }
        at += 1 + frac;
    }
    let zone_ok = match b.get(at..) {
        Some(b"Z" | b"z") => true,
        Some([b'+' | b'-', ..]) if b.len() == at + 6 && sep(at + 3, b":") => {
            matches!((digits(s, at + 1, 2), digits(s, at + 4, 2)), (Some(h), Some(m)) if h < 24 && m < 60)
        }
        _ => false,
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let date_ok = year >= 1 && (1..=12).contains(&month) && day >= 1 && day <= month_days[(month.max(1) - 1) as usize];
    if !zone_ok || !date_ok || hour > 23 || minute > 59 || second > 59 {
        return Some(FORM);
    }
    None
}

/// Why `s` is not a duration CEL accepts (`1h30m`, `-90s`, `1.5ms`), if it is not.
fn duration_problem(s: &str) -> Option<&'static str> {
    const FORM: &str = "is not a duration such as 1h30m, 90s or 1.5ms";
    let rest = s.strip_prefix(['-', '+']).unwrap_or(s);
    if rest == "0" {
        return None;
    }
    let mut rest = rest;
    if rest.is_empty() {
        return Some(FORM);
    }
    while !rest.is_empty() {
        let int = rest.bytes().take_while(u8::is_ascii_digit).count();
        let mut n = int;
        if rest[n..].starts_with('.') {
            let frac = rest[n + 1..].bytes().take_while(u8::is_ascii_digit).count();
            if frac == 0 {
                return Some(FORM);
            }
            n += 1 + frac;
        }
        if n == 0 {
            return Some(FORM);
        }
        rest = &rest[n..];
        let unit = ["ns", "us", "µs", "ms", "h", "m", "s"].into_iter().find(|u| rest.starts_with(u));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return Some(FORM),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_reference_examples_and_standard_functions() {
        for expr in [
            "target.signing_time >= timestamp('2025-05-31T00:00:00Z')",
            "has(target.secure_signing_time) && target.secure_signing_time < timestamp('2024-01-01T00:00:00Z') ? BLOCKLIST : ALLOWLIST",
            "'--inspect' in args ? BLOCKLIST : ALLOWLIST",
            "euid == 0 && !target.is_platform_binary",
            "true",
            "ALLOWLIST_COMPILER",
            "SILENT_TTY_BLOCKLIST",
            "3",
            "target.team_id == 'EQHXZ8M8AV' || target.signing_id.startsWith('platform:')",
            "args.exists(a, a.startsWith('--remote-debugging'))",
            "args.all(a, size(a) < 1024)",
            "args.exists_one(a, a == '-e')",
            "args.filter(a, a.contains('x')).size() > 0",
            "args.map(a, size(a)).exists(n, n > 10)",
            "envs.exists(k, k.startsWith('DYLD_')) ? SILENT_BLOCKLIST : ALLOWLIST",
            "'DYLD_INSERT_LIBRARIES' in envs",
            "has(envs.HOME) && envs.HOME == '/var/root'",
            "envs['PATH'].contains('/tmp')",
            "cwd.matches('^/Users/[^/]+/Downloads') && path.endsWith('.app/Contents/MacOS/x')",
            "matches(path, '^/opt/')",
            "size(args) > 2 && args[1] == '-c'",
            "target.signing_time.getFullYear() < 2020",
            "target.signing_time.getHours('America/Los_Angeles') > 18",
            "timestamp('2025-05-31T00:00:00Z') - target.signing_time > duration('720h')",
            "target.signing_time + duration('1h30m') < timestamp('2025-05-31T00:00:00.5+02:00')",
            "int(target.signing_time) > 1700000000",
            "string(euid) == '0'",
            "euid > 0.5",
            "[1, 2, 3].exists(x, x == euid)",
            "{'a': 1, 'b': 2}[cwd] == 1",
            "type(euid) == int",
            "dyn(euid) == 0",
            "euid == 0 ? BLOCKLIST : (cwd == '/' ? SILENT_BLOCKLIST : ALLOWLIST)",
            "!(euid != 0)\n  && cwd != '/'",
        ] {
            assert_eq!(check(expr), Ok(()), "{expr}");
        }
    }

    /// `(expression, line, column, part of the message)`.
    fn check_err(expr: &str, line: usize, column: usize, needle: &str) {
        let err = check(expr).expect_err(expr);
        assert_eq!((err.line, err.column), (line, column), "{expr}: {err}");
        assert!(err.message.contains(needle), "{expr}: {err:?} does not mention {needle:?}");
    }

    #[test]
    fn syntax_errors_name_their_position() {
        check_err("this is ((( not cel", 1, 6, "syntax error");
        check_err("euid == 0 &&", 1, 13, "syntax error");
        check_err("euid == 0 &&\n  (cwd == '/'", 2, 14, "syntax error");
        check_err("'unterminated", 1, 1, "syntax error");
        check_err("", 1, 1, "syntax error");
    }

    #[test]
    fn unknown_variables_and_fields_are_refused() {
        check_err("uid == 0", 1, 1, "undeclared reference to 'uid'");
        check_err(
            "euid == 0 && target.signing_tme < timestamp('2025-01-01T00:00:00Z')",
            1,
            20,
            "no field 'signing_tme'",
        );
        check_err("has(target.cdhash)", 1, 4, "no field 'cdhash'");
        check_err("REQUIRE_TOUCHID", 1, 1, "undeclared reference");
        check_err("cwd.length > 3", 1, 4, "string has no fields");
        // A comprehension variable is only in scope inside its macro.
        check_err("args.exists(a, a == '-e') || a == '-e'", 1, 30, "undeclared reference to 'a'");
    }

    #[test]
    fn unknown_functions_and_bad_overloads_are_refused() {
        check_err("cwd.lowerAscii() == '/'", 1, 15, "undeclared function 'lowerAscii'");
        check_err("foo(1)", 1, 4, "undeclared function 'foo'");
        check_err("cwd.size(1) > 0", 1, 9, "no matching overload for 'size'");
        check_err("startsWith(cwd, '/')", 1, 11, "is a member function");
        check_err("euid == 'root'", 1, 6, "no matching overload for '==' applied to (int, string)");
        check_err("euid == 0u", 1, 6, "(int, uint)");
        check_err("euid + 1.0 > 2.0", 1, 6, "'+'");
        check_err("target.signing_time > '2025-01-01'", 1, 21, "(google.protobuf.Timestamp, string)");
        check_err("'x' in envs['PATH']", 1, 5, "'in'");
        check_err("euid ? true : false", 1, 1, "condition of ?: must be bool");
        check_err("euid && true", 1, 1, "must be bool");
        check_err("euid.exists(x, true)", 1, 1, "int cannot be iterated");
    }

    #[test]
    fn the_result_must_be_bool_or_a_v1_return_value() {
        check_err("cwd", 1, 1, "gives string");
        check_err("args", 1, 1, "gives list(string)");
        check_err("target.signing_time", 1, 7, "gives google.protobuf.Timestamp");
        check_err("euid == 0 ? BLOCKLIST : 'allow'", 1, 11, "different types");
        check_err("0", 1, 1, "UNSPECIFIED");
        check_err("euid == 0 ? 5 : ALLOWLIST", 1, 13, "CEL v2");
        check_err("euid == 0 ? BLOCKLIST : 42", 1, 25, "not a ReturnValue");
        check_err("1u", 1, 1, "gives uint");
        check_err("dyn(euid)", 1, 4, "only known when it runs");
    }

    #[test]
    fn literal_timestamps_and_durations_must_convert() {
        check_err("target.signing_time > timestamp('2025-05-31')", 1, 33, "RFC 3339");
        check_err("target.signing_time > timestamp('2025-02-30T00:00:00Z')", 1, 33, "RFC 3339");
        check_err("target.signing_time > timestamp('2025-05-31T25:00:00Z')", 1, 33, "RFC 3339");
        check_err("timestamp('2025-05-31T00:00:00Z') - target.signing_time > duration('1d')", 1, 68, "duration");
        check_err("duration('') < duration('1h')", 1, 10, "duration");
        for ok in ["2024-02-29T23:59:59Z", "2025-05-31t00:00:00.123456789z", "0001-01-01T00:00:00-08:00"] {
            assert_eq!(timestamp_problem(ok), None, "{ok}");
        }
        for ok in ["0", "-90s", "1h30m", "1.5ms", "2us", "3µs", "10ns", ".5s", "+1m"] {
            assert_eq!(duration_problem(ok), None, "{ok}");
        }
        for bad in ["1", "h", "1.h", "1x", "--1s", "1h 30m"] {
            assert!(duration_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn positions_count_characters_not_bytes() {
        check_err("'é' == cwd && nope", 1, 15, "undeclared reference to 'nope'");
        check_err("'é' == cwd &&\n 'ü' == nope", 2, 9, "undeclared reference to 'nope'");
        check_err("'éé' == cwd &&", 1, 15, "syntax error");
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let deep = format!("{}true{}", "(".repeat(500), ")".repeat(500));
        assert!(check(&deep).unwrap_err().message.contains("nests deeper than 96 levels"));
        let chain = vec!["euid"; 2000].join(" + ");
        assert!(check(&format!("{chain} > 0")).unwrap_err().message.contains("nests deeper than 96 levels"));
        // Logical chains are balanced by the parser: long ones are fine.
        assert_eq!(check(&vec!["euid == 0"; 500].join(" || ")), Ok(()));
    }
}
