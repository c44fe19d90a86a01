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

mod checker;
use checker::Checker;

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
    let mut checker = Checker::new(&info);
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

#[cfg(test)]
mod tests {
    use super::*;
    use checker::{duration_problem, timestamp_problem};

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
