//! The type checker over the `cel` crate's AST: each expression's type from Santa's
//! environment and the standard overloads (declared in the parent module), errors with the
//! line and column of the offending node, and the literal arguments santad would fail to
//! convert.

use super::*;

/// Walks a parsed expression, giving each node its type or a positioned error.
pub(super) struct Checker<'a> {
    info: &'a SourceInfo,
    /// Comprehension variables in scope, innermost last.
    scopes: Vec<(String, Ty)>,
}

impl<'a> Checker<'a> {
    pub(super) fn new(info: &'a SourceInfo) -> Self {
        Checker { info, scopes: Vec::new() }
    }

    pub(super) fn error(&self, id: u64, message: impl Into<String>) -> CelError {
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
    pub(super) fn expr(&mut self, e: &IdedExpr, depth: usize) -> Result<Ty, CelError> {
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
    pub(super) fn check_return_values(&self, e: &IdedExpr) -> Result<(), CelError> {
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
pub(super) fn timestamp_problem(s: &str) -> Option<&'static str> {
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
pub(super) fn duration_problem(s: &str) -> Option<&'static str> {
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
