//! A small interpreter for proxy auto-config (PAC) scripts: enough JavaScript for the PAC files
//! found in offices, not a JavaScript engine.
//!
//! # The subset
//!
//! - Function declarations `function name(a, b) { ... }` (`FindProxyForURL(url, host)` must be
//!   one; others are helpers it may call), and top-level `var`/`let`/`const` statements.
//! - Statements: `var`/`let`/`const` declarations, assignment `x = e`, `if (...) ... else ...`,
//!   `return e`, blocks, expression statements. No loops, `switch`, `try`, objects or arrays.
//! - Expressions: string (single or double quoted, with `\\ \' \" \n \t` escapes), number,
//!   `true`/`false`/`null`/`undefined` literals, variables, calls, `!`, `&&`, `||`, `==`, `!=`,
//!   `===`, `!==`, `<`, `<=`, `>`, `>=`, `+` (string concatenation or addition), `?:`,
//!   parentheses, and the string methods `toLowerCase()`, `toUpperCase()`, `indexOf(s)`,
//!   `substring(a[, b])` and the property `length`.
//! - The PAC functions `isPlainHostName`, `dnsDomainIs`, `localHostOrDomainIs`, `isResolvable`,
//!   `isInNet` (IPv4), `dnsResolve`, `myIpAddress`, `dnsDomainLevels`, `shExpMatch` (`*` and `?`
//!   wildcards) and `alert` (ignored). Time functions (`weekdayRange`, `dateRange`,
//!   `timeRange`) are rejected as unsupported.
//!
//! Name resolution is the caller's ([`PacEnv::resolve`]), so evaluation is deterministic and
//! testable. Limits keep hostile scripts harmless: source size [`MAX_SOURCE`], nesting depth
//! [`MAX_DEPTH`], call depth [`MAX_CALL_DEPTH`] and an evaluation budget of [`MAX_STEPS`]
//! steps; exceeding one is an error, never a hang or a stack overflow.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use thiserror::Error;

use crate::proxy::{parse_pac_result, ProxyChoice};

/// The largest script accepted.
pub const MAX_SOURCE: usize = 1 << 20;
/// The deepest nesting of expressions and statements.
pub const MAX_DEPTH: usize = 64;
/// The deepest chain of user function calls.
pub const MAX_CALL_DEPTH: usize = 16;
/// Evaluation steps per [`Pac::find_proxy`] call.
pub const MAX_STEPS: u64 = 200_000;

/// Why a script was rejected or failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PacError {
    #[error("PAC script too large ({0} bytes)")]
    TooLarge(usize),
    #[error("PAC syntax error on line {line}: {msg}")]
    Syntax { line: u32, msg: String },
    #[error("PAC script uses {what} (line {line}), which is not supported")]
    Unsupported { what: String, line: u32 },
    #[error("PAC script has no FindProxyForURL(url, host) function")]
    NoEntryPoint,
    #[error("PAC evaluation failed: {0}")]
    Runtime(String),
    #[error("FindProxyForURL returned {0}, not a string")]
    NotAString(String),
}

/// What the script may ask of the world.
pub struct PacEnv<'a> {
    /// `myIpAddress()`.
    pub my_ip: IpAddr,
    /// `dnsResolve`, `isResolvable` and `isInNet` on names.
    pub resolve: &'a dyn Fn(&str) -> Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    P(&'static str),
}

const PUNCT: &[&str] = &[
    "===", "!==", "==", "!=", "<=", ">=", "&&", "||", "(", ")", "{", "}", ",", ";", "=", "!", "+",
    "<", ">", ".", "?", ":",
];

fn lex(src: &str) -> Result<Vec<(Tok, u32)>, PacError> {
    let b = src.as_bytes();
    let mut i = 0;
    let mut line = 1u32;
    let mut out = Vec::new();
    let syntax = |line, msg: &str| PacError::Syntax {
        line,
        msg: msg.to_owned(),
    };
    while i < b.len() {
        let c = b[i];
        if c == b'\n' {
            line += 1;
            i += 1;
        } else if c.is_ascii_whitespace() {
            i += 1;
        } else if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let end = src[i + 2..]
                .find("*/")
                .ok_or_else(|| syntax(line, "unterminated comment"))?;
            line += src[i..i + 2 + end].matches('\n').count() as u32;
            i += end + 4;
        } else if c == b'"' || c == b'\'' {
            let mut s = String::new();
            let mut j = i + 1;
            loop {
                let ch = src[j..]
                    .chars()
                    .next()
                    .ok_or_else(|| syntax(line, "unterminated string"))?;
                j += ch.len_utf8();
                match ch {
                    '\n' => return Err(syntax(line, "newline in string")),
                    '\\' => {
                        let e = src[j..]
                            .chars()
                            .next()
                            .ok_or_else(|| syntax(line, "unterminated string"))?;
                        j += e.len_utf8();
                        s.push(match e {
                            'n' => '\n',
                            't' => '\t',
                            'r' => '\r',
                            other => other,
                        });
                    }
                    ch if ch as u32 == u32::from(c) => break,
                    ch => s.push(ch),
                }
            }
            out.push((Tok::Str(s), line));
            i = j;
        } else if c.is_ascii_digit() {
            let s = i;
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                i += 1;
            }
            let n = src[s..i]
                .parse::<f64>()
                .map_err(|_| syntax(line, "bad number"))?;
            out.push((Tok::Num(n), line));
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b'$' {
            let s = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$') {
                i += 1;
            }
            out.push((Tok::Ident(src[s..i].to_owned()), line));
        } else if let Some(p) = PUNCT.iter().find(|p| b[i..].starts_with(p.as_bytes())) {
            out.push((Tok::P(p), line));
            i += p.len();
        } else {
            let ch = src[i..].chars().next().unwrap_or('?');
            return Err(syntax(line, &format!("unexpected character {ch:?}")));
        }
    }
    Ok(out)
}

#[derive(Debug, Clone)]
enum Expr {
    Lit(Value),
    Var(String),
    Call(String, Vec<Expr>, u32),
    Method(Box<Expr>, String, Vec<Expr>, u32),
    Length(Box<Expr>),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Bin(&'static str, Box<Expr>, Box<Expr>),
    Cond(Box<Expr>, Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone)]
enum Stmt {
    Decl(Vec<(String, Option<Expr>)>),
    Assign(String, Expr),
    If(Expr, Box<Stmt>, Option<Box<Stmt>>),
    Return(Option<Expr>),
    Block(Vec<Stmt>),
    Expr(Expr),
}

#[derive(Debug, Clone)]
struct Function {
    params: Vec<String>,
    body: Vec<Stmt>,
}

struct Parser {
    toks: Vec<(Tok, u32)>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn line(&self) -> u32 {
        self.toks
            .get(self.pos)
            .or(self.toks.last())
            .map_or(1, |t| t.1)
    }
    fn err(&self, msg: impl Into<String>) -> PacError {
        PacError::Syntax {
            line: self.line(),
            msg: msg.into(),
        }
    }
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.0)
    }
    fn is(&self, p: &str) -> bool {
        matches!(self.peek(), Some(Tok::P(q)) if *q == p)
    }
    fn is_kw(&self, k: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(i)) if i == k)
    }
    fn eat(&mut self, p: &str) -> bool {
        if self.is(p) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, p: &str) -> Result<(), PacError> {
        if self.eat(p) {
            Ok(())
        } else {
            Err(self.err(format!("expected {p:?}")))
        }
    }
    fn ident(&mut self) -> Result<String, PacError> {
        match self.peek() {
            Some(Tok::Ident(i)) if !is_keyword(i) => {
                let i = i.clone();
                self.pos += 1;
                Ok(i)
            }
            _ => Err(self.err("expected a name")),
        }
    }
    fn enter(&mut self) -> Result<(), PacError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            Err(self.err("nested too deeply"))
        } else {
            Ok(())
        }
    }

    fn program(&mut self) -> Result<(HashMap<String, Function>, Vec<Stmt>), PacError> {
        let mut funcs = HashMap::new();
        let mut globals = Vec::new();
        while self.peek().is_some() {
            if self.is_kw("function") {
                self.pos += 1;
                let name = self.ident()?;
                self.expect("(")?;
                let mut params = Vec::new();
                if !self.eat(")") {
                    loop {
                        params.push(self.ident()?);
                        if self.eat(")") {
                            break;
                        }
                        self.expect(",")?;
                    }
                }
                let body = self.block()?;
                funcs.insert(name, Function { params, body });
            } else {
                globals.push(self.stmt()?);
            }
        }
        Ok((funcs, globals))
    }

    fn block(&mut self) -> Result<Vec<Stmt>, PacError> {
        self.expect("{")?;
        let mut v = Vec::new();
        while !self.eat("}") {
            if self.peek().is_none() {
                return Err(self.err("missing '}'"));
            }
            v.push(self.stmt()?);
        }
        Ok(v)
    }

    fn stmt(&mut self) -> Result<Stmt, PacError> {
        self.enter()?;
        let s = self.stmt_inner();
        self.depth -= 1;
        s
    }

    fn stmt_inner(&mut self) -> Result<Stmt, PacError> {
        let line = self.line();
        if self.is("{") {
            return Ok(Stmt::Block(self.block()?));
        }
        if self.eat(";") {
            return Ok(Stmt::Block(Vec::new()));
        }
        if let Some(Tok::Ident(k)) = self.peek() {
            match k.as_str() {
                "var" | "let" | "const" => {
                    self.pos += 1;
                    let mut v = Vec::new();
                    loop {
                        let n = self.ident()?;
                        let e = if self.eat("=") {
                            Some(self.expr()?)
                        } else {
                            None
                        };
                        v.push((n, e));
                        if !self.eat(",") {
                            break;
                        }
                    }
                    self.eat(";");
                    return Ok(Stmt::Decl(v));
                }
                "if" => {
                    self.pos += 1;
                    self.expect("(")?;
                    let c = self.expr()?;
                    self.expect(")")?;
                    let then = Box::new(self.stmt()?);
                    let els = if self.is_kw("else") {
                        self.pos += 1;
                        Some(Box::new(self.stmt()?))
                    } else {
                        None
                    };
                    return Ok(Stmt::If(c, then, els));
                }
                "return" => {
                    self.pos += 1;
                    if self.eat(";") || self.is("}") {
                        return Ok(Stmt::Return(None));
                    }
                    let e = self.expr()?;
                    self.eat(";");
                    return Ok(Stmt::Return(Some(e)));
                }
                "for" | "while" | "do" | "switch" | "try" | "throw" | "new" | "function"
                | "break" | "continue" => {
                    return Err(PacError::Unsupported {
                        what: format!("'{k}'"),
                        line,
                    })
                }
                _ => {}
            }
            if matches!(self.toks.get(self.pos + 1), Some((Tok::P("="), _))) {
                let n = self.ident()?;
                self.pos += 1;
                let e = self.expr()?;
                self.eat(";");
                return Ok(Stmt::Assign(n, e));
            }
        }
        let e = self.expr()?;
        self.eat(";");
        Ok(Stmt::Expr(e))
    }

    fn expr(&mut self) -> Result<Expr, PacError> {
        self.enter()?;
        let e = self.cond();
        self.depth -= 1;
        e
    }

    fn cond(&mut self) -> Result<Expr, PacError> {
        let c = self.or()?;
        if self.eat("?") {
            let a = self.expr()?;
            self.expect(":")?;
            let b = self.expr()?;
            return Ok(Expr::Cond(Box::new(c), Box::new(a), Box::new(b)));
        }
        Ok(c)
    }

    fn or(&mut self) -> Result<Expr, PacError> {
        let mut l = self.and()?;
        while self.eat("||") {
            l = Expr::Or(Box::new(l), Box::new(self.and()?));
        }
        Ok(l)
    }

    fn and(&mut self) -> Result<Expr, PacError> {
        let mut l = self.eq()?;
        while self.eat("&&") {
            l = Expr::And(Box::new(l), Box::new(self.eq()?));
        }
        Ok(l)
    }

    fn eq(&mut self) -> Result<Expr, PacError> {
        let mut l = self.rel()?;
        loop {
            let op = match self.peek() {
                Some(Tok::P(p @ ("==" | "!=" | "===" | "!=="))) => *p,
                _ => return Ok(l),
            };
            self.pos += 1;
            l = Expr::Bin(op, Box::new(l), Box::new(self.rel()?));
        }
    }

    fn rel(&mut self) -> Result<Expr, PacError> {
        let mut l = self.add()?;
        loop {
            let op = match self.peek() {
                Some(Tok::P(p @ ("<" | "<=" | ">" | ">="))) => *p,
                _ => return Ok(l),
            };
            self.pos += 1;
            l = Expr::Bin(op, Box::new(l), Box::new(self.add()?));
        }
    }

    fn add(&mut self) -> Result<Expr, PacError> {
        let mut l = self.unary()?;
        while self.eat("+") {
            l = Expr::Bin("+", Box::new(l), Box::new(self.unary()?));
        }
        Ok(l)
    }

    fn unary(&mut self) -> Result<Expr, PacError> {
        if self.eat("!") {
            self.enter()?;
            let e = self.unary();
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(e?)));
        }
        let mut e = self.primary()?;
        while self.eat(".") {
            let line = self.line();
            let name = self.ident()?;
            if name == "length" && !self.is("(") {
                e = Expr::Length(Box::new(e));
                continue;
            }
            let args = self.args()?;
            e = Expr::Method(Box::new(e), name, args, line);
        }
        Ok(e)
    }

    fn args(&mut self) -> Result<Vec<Expr>, PacError> {
        self.expect("(")?;
        let mut v = Vec::new();
        if self.eat(")") {
            return Ok(v);
        }
        loop {
            v.push(self.expr()?);
            if self.eat(")") {
                return Ok(v);
            }
            self.expect(",")?;
        }
    }

    fn primary(&mut self) -> Result<Expr, PacError> {
        let line = self.line();
        let t = self
            .toks
            .get(self.pos)
            .map(|t| t.0.clone())
            .ok_or_else(|| self.err("unexpected end of script"))?;
        self.pos += 1;
        match t {
            Tok::Str(s) => Ok(Expr::Lit(Value::Str(s))),
            Tok::Num(n) => Ok(Expr::Lit(Value::Num(n))),
            Tok::P("(") => {
                let e = self.expr()?;
                self.expect(")")?;
                Ok(e)
            }
            Tok::Ident(i) => match i.as_str() {
                "true" => Ok(Expr::Lit(Value::Bool(true))),
                "false" => Ok(Expr::Lit(Value::Bool(false))),
                "null" => Ok(Expr::Lit(Value::Null)),
                "undefined" => Ok(Expr::Lit(Value::Undefined)),
                k if is_keyword(k) => Err(PacError::Unsupported {
                    what: format!("'{k}'"),
                    line,
                }),
                _ if self.is("(") => Ok(Expr::Call(i, self.args()?, line)),
                _ => Ok(Expr::Var(i)),
            },
            Tok::P(p) => {
                self.pos -= 1;
                Err(self.err(format!("unexpected {p:?}")))
            }
        }
    }
}

fn is_keyword(s: &str) -> bool {
    matches!(
        s,
        "var"
            | "let"
            | "const"
            | "if"
            | "else"
            | "return"
            | "function"
            | "for"
            | "while"
            | "do"
            | "switch"
            | "try"
            | "throw"
            | "new"
            | "break"
            | "continue"
            | "typeof"
            | "delete"
            | "in"
            | "this"
    )
}

/// A script value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
    Undefined,
}

impl Value {
    fn truthy(&self) -> bool {
        match self {
            Value::Str(s) => !s.is_empty(),
            Value::Num(n) => *n != 0.0 && !n.is_nan(),
            Value::Bool(b) => *b,
            Value::Null | Value::Undefined => false,
        }
    }
    fn to_js_string(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            Value::Num(n) if n.fract() == 0.0 && n.abs() < 1e15 => format!("{}", *n as i64),
            Value::Num(n) => format!("{n}"),
            Value::Bool(b) => b.to_string(),
            Value::Null => "null".into(),
            Value::Undefined => "undefined".into(),
        }
    }
    fn to_num(&self) -> f64 {
        match self {
            Value::Num(n) => *n,
            Value::Bool(b) => f64::from(u8::from(*b)),
            Value::Str(s) if s.trim().is_empty() => 0.0,
            Value::Str(s) => s.trim().parse().unwrap_or(f64::NAN),
            Value::Null => 0.0,
            Value::Undefined => f64::NAN,
        }
    }
    fn loose_eq(&self, o: &Value) -> bool {
        use Value::*;
        match (self, o) {
            (Null | Undefined, Null | Undefined) => true,
            (Null | Undefined, _) | (_, Null | Undefined) => false,
            (Str(a), Str(b)) => a == b,
            _ => self.to_num() == o.to_num(),
        }
    }
    fn strict_eq(&self, o: &Value) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(o) && self.loose_eq(o)
    }
}

/// A parsed PAC script.
#[derive(Debug, Clone)]
pub struct Pac {
    funcs: HashMap<String, Function>,
    globals: Vec<Stmt>,
}

enum Flow {
    Next,
    Return(Value),
}

struct Eval<'e, 'a> {
    pac: &'e Pac,
    env: &'e PacEnv<'a>,
    steps: u64,
    calls: usize,
}

type Scope = HashMap<String, Value>;

impl Pac {
    /// Parses a script. Errors name the line.
    pub fn parse(src: &str) -> Result<Pac, PacError> {
        if src.len() > MAX_SOURCE {
            return Err(PacError::TooLarge(src.len()));
        }
        let toks = lex(src)?;
        let (funcs, globals) = Parser {
            toks,
            pos: 0,
            depth: 0,
        }
        .program()?;
        if funcs
            .get("FindProxyForURL")
            .is_none_or(|f| f.params.len() != 2)
        {
            return Err(PacError::NoEntryPoint);
        }
        Ok(Pac { funcs, globals })
    }

    /// Runs `FindProxyForURL(url, host)` and returns its raw string.
    pub fn find_proxy_raw(&self, env: &PacEnv, url: &str, host: &str) -> Result<String, PacError> {
        let mut ev = Eval {
            pac: self,
            env,
            steps: 0,
            calls: 0,
        };
        let mut globals = Scope::new();
        for s in &self.globals {
            ev.stmt(s, &mut globals, None)?;
        }
        let v = ev.call_user(
            "FindProxyForURL",
            vec![Value::Str(url.to_owned()), Value::Str(host.to_owned())],
            &mut globals,
        )?;
        match v {
            Value::Str(s) => Ok(s),
            other => Err(PacError::NotAString(other.to_js_string())),
        }
    }

    /// Runs `FindProxyForURL(url, host)` and parses the result into proxy choices.
    pub fn find_proxy(
        &self,
        env: &PacEnv,
        url: &str,
        host: &str,
    ) -> Result<Vec<ProxyChoice>, PacError> {
        Ok(parse_pac_result(&self.find_proxy_raw(env, url, host)?))
    }
}

impl Eval<'_, '_> {
    fn tick(&mut self) -> Result<(), PacError> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            Err(PacError::Runtime("evaluation budget exhausted".into()))
        } else {
            Ok(())
        }
    }

    fn call_user(
        &mut self,
        name: &str,
        args: Vec<Value>,
        globals: &mut Scope,
    ) -> Result<Value, PacError> {
        let f = self
            .pac
            .funcs
            .get(name)
            .ok_or_else(|| PacError::Runtime(format!("{name} is not defined")))?;
        if self.calls >= MAX_CALL_DEPTH {
            return Err(PacError::Runtime("calls nested too deeply".into()));
        }
        self.calls += 1;
        let mut locals: Scope = f
            .params
            .iter()
            .cloned()
            .zip(args.into_iter().chain(std::iter::repeat(Value::Undefined)))
            .collect();
        let mut r = Ok(Value::Undefined);
        for s in &f.body {
            match self.stmt(s, globals, Some(&mut locals)) {
                Ok(Flow::Next) => {}
                Ok(Flow::Return(v)) => {
                    r = Ok(v);
                    break;
                }
                Err(e) => {
                    r = Err(e);
                    break;
                }
            }
        }
        self.calls -= 1;
        r
    }

    fn stmt(
        &mut self,
        s: &Stmt,
        globals: &mut Scope,
        mut locals: Option<&mut Scope>,
    ) -> Result<Flow, PacError> {
        self.tick()?;
        match s {
            Stmt::Decl(v) => {
                for (n, e) in v {
                    let val = match e {
                        Some(e) => self.expr(e, globals, locals.as_deref())?,
                        None => Value::Undefined,
                    };
                    match locals.as_deref_mut() {
                        Some(l) => l.insert(n.clone(), val),
                        None => globals.insert(n.clone(), val),
                    };
                }
                Ok(Flow::Next)
            }
            Stmt::Assign(n, e) => {
                let val = self.expr(e, globals, locals.as_deref())?;
                match locals.as_deref_mut() {
                    Some(l) if l.contains_key(n) => l.insert(n.clone(), val),
                    _ => globals.insert(n.clone(), val),
                };
                Ok(Flow::Next)
            }
            Stmt::If(c, t, e) => {
                if self.expr(c, globals, locals.as_deref())?.truthy() {
                    self.stmt(t, globals, locals)
                } else if let Some(e) = e {
                    self.stmt(e, globals, locals)
                } else {
                    Ok(Flow::Next)
                }
            }
            Stmt::Return(e) => Ok(Flow::Return(match e {
                Some(e) => self.expr(e, globals, locals.as_deref())?,
                None => Value::Undefined,
            })),
            Stmt::Block(v) => {
                for s in v {
                    if let Flow::Return(v) = self.stmt(s, globals, locals.as_deref_mut())? {
                        return Ok(Flow::Return(v));
                    }
                }
                Ok(Flow::Next)
            }
            Stmt::Expr(e) => {
                self.expr(e, globals, locals.as_deref())?;
                Ok(Flow::Next)
            }
        }
    }

    fn expr(
        &mut self,
        e: &Expr,
        globals: &mut Scope,
        locals: Option<&Scope>,
    ) -> Result<Value, PacError> {
        self.tick()?;
        Ok(match e {
            Expr::Lit(v) => v.clone(),
            Expr::Var(n) => locals
                .and_then(|l| l.get(n))
                .or_else(|| globals.get(n))
                .cloned()
                .ok_or_else(|| PacError::Runtime(format!("{n} is not defined")))?,
            Expr::Not(a) => Value::Bool(!self.expr(a, globals, locals)?.truthy()),
            Expr::And(a, b) => {
                let l = self.expr(a, globals, locals)?;
                if l.truthy() {
                    self.expr(b, globals, locals)?
                } else {
                    l
                }
            }
            Expr::Or(a, b) => {
                let l = self.expr(a, globals, locals)?;
                if l.truthy() {
                    l
                } else {
                    self.expr(b, globals, locals)?
                }
            }
            Expr::Cond(c, a, b) => {
                if self.expr(c, globals, locals)?.truthy() {
                    self.expr(a, globals, locals)?
                } else {
                    self.expr(b, globals, locals)?
                }
            }
            Expr::Bin(op, a, b) => {
                let l = self.expr(a, globals, locals)?;
                let r = self.expr(b, globals, locals)?;
                match *op {
                    "==" => Value::Bool(l.loose_eq(&r)),
                    "!=" => Value::Bool(!l.loose_eq(&r)),
                    "===" => Value::Bool(l.strict_eq(&r)),
                    "!==" => Value::Bool(!l.strict_eq(&r)),
                    "+" => match (&l, &r) {
                        (Value::Str(_), _) | (_, Value::Str(_)) => {
                            let s = l.to_js_string() + &r.to_js_string();
                            if s.len() > MAX_SOURCE {
                                return Err(PacError::Runtime("string too long".into()));
                            }
                            Value::Str(s)
                        }
                        _ => Value::Num(l.to_num() + r.to_num()),
                    },
                    cmp => {
                        let ord = match (&l, &r) {
                            (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
                            _ => l.to_num().partial_cmp(&r.to_num()),
                        };
                        Value::Bool(ord.is_some_and(|o| match cmp {
                            "<" => o.is_lt(),
                            "<=" => o.is_le(),
                            ">" => o.is_gt(),
                            _ => o.is_ge(),
                        }))
                    }
                }
            }
            Expr::Length(a) => match self.expr(a, globals, locals)? {
                Value::Str(s) => Value::Num(s.chars().count() as f64),
                _ => Value::Undefined,
            },
            Expr::Method(obj, name, args, line) => {
                let Value::Str(s) = self.expr(obj, globals, locals)? else {
                    return Err(PacError::Runtime(format!(
                        "line {line}: .{name}() on a non-string"
                    )));
                };
                let a = self.values(args, globals, locals)?;
                let idx = |i: usize| a.get(i).map(Value::to_num);
                match name.as_str() {
                    "toLowerCase" => Value::Str(s.to_lowercase()),
                    "toUpperCase" => Value::Str(s.to_uppercase()),
                    "indexOf" => {
                        let needle = a.first().map(Value::to_js_string).unwrap_or_default();
                        Value::Num(
                            s.find(&needle)
                                .map_or(-1.0, |b| s[..b].chars().count() as f64),
                        )
                    }
                    "substring" => {
                        let n = s.chars().count();
                        let clamp = |v: f64| {
                            if v.is_nan() {
                                0
                            } else {
                                v.clamp(0.0, n as f64) as usize
                            }
                        };
                        let from = clamp(idx(0).unwrap_or(0.0));
                        let to = clamp(idx(1).unwrap_or(n as f64));
                        let (from, to) = (from.min(to), from.max(to));
                        Value::Str(s.chars().skip(from).take(to - from).collect())
                    }
                    _ => {
                        return Err(PacError::Unsupported {
                            what: format!("the method .{name}()"),
                            line: *line,
                        })
                    }
                }
            }
            Expr::Call(name, args, line) => {
                let a = self.values(args, globals, locals)?;
                if self.pac.funcs.contains_key(name) {
                    return self.call_user(name, a, globals);
                }
                self.builtin(name, &a, *line)?
            }
        })
    }

    fn values(
        &mut self,
        args: &[Expr],
        globals: &mut Scope,
        locals: Option<&Scope>,
    ) -> Result<Vec<Value>, PacError> {
        args.iter().map(|e| self.expr(e, globals, locals)).collect()
    }

    fn resolve(&self, host: &str) -> Option<IpAddr> {
        host.parse().ok().or_else(|| (self.env.resolve)(host))
    }

    fn builtin(&mut self, name: &str, a: &[Value], line: u32) -> Result<Value, PacError> {
        let s = |i: usize| a.get(i).map(Value::to_js_string).unwrap_or_default();
        Ok(match name {
            "isPlainHostName" => Value::Bool(!s(0).contains('.')),
            "dnsDomainIs" => Value::Bool(s(0).to_lowercase().ends_with(&s(1).to_lowercase())),
            "localHostOrDomainIs" => {
                let (h, hd) = (s(0).to_lowercase(), s(1).to_lowercase());
                Value::Bool(h == hd || (!h.contains('.') && hd.starts_with(&format!("{h}."))))
            }
            "isResolvable" => Value::Bool(self.resolve(&s(0)).is_some()),
            "dnsResolve" => self
                .resolve(&s(0))
                .map_or(Value::Null, |ip| Value::Str(ip.to_string())),
            "myIpAddress" => Value::Str(self.env.my_ip.to_string()),
            "dnsDomainLevels" => Value::Num(s(0).matches('.').count() as f64),
            "shExpMatch" => Value::Bool(sh_exp_match(&s(0), &s(1))),
            "isInNet" => {
                let (Ok(pat), Ok(mask)) = (s(1).parse::<Ipv4Addr>(), s(2).parse::<Ipv4Addr>())
                else {
                    return Ok(Value::Bool(false));
                };
                Value::Bool(match self.resolve(&s(0)) {
                    Some(IpAddr::V4(ip)) => {
                        u32::from(ip) & u32::from(mask) == u32::from(pat) & u32::from(mask)
                    }
                    _ => false,
                })
            }
            "alert" => Value::Undefined,
            "weekdayRange" | "dateRange" | "timeRange" => {
                return Err(PacError::Unsupported {
                    what: format!("{name}()"),
                    line,
                })
            }
            _ => {
                return Err(PacError::Runtime(format!(
                    "line {line}: {name} is not defined"
                )))
            }
        })
    }
}

/// Shell-style match of `s` against `pattern`: `*` any run, `?` one character, everything
/// else literal (as PAC's `shExpMatch`). Linear in practice: one backtrack point.
pub fn sh_exp_match(s: &str, pattern: &str) -> bool {
    let s: Vec<char> = s.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if j < p.len() && (p[j] == '?' || p[j] == s[i]) {
            i += 1;
            j += 1;
        } else if j < p.len() && p[j] == '*' {
            star = Some((j, i));
            j += 1;
        } else if let Some((sj, si)) = star {
            j = sj + 1;
            i = si + 1;
            star = Some((sj, si + 1));
        } else {
            return false;
        }
    }
    p[j..].iter().all(|c| *c == '*')
}

/// Where a PAC script comes from: an `http://` URL (fetched with a plain GET) or a file path.
pub async fn load(location: &str, timeout: std::time::Duration) -> Result<String, String> {
    if location.starts_with("http://") || location.starts_with("HTTP://") {
        let url = crate::http::HttpUrl::parse(location).map_err(|e| e.to_string())?;
        let (head, body) = crate::http::get(&url, timeout, MAX_SOURCE)
            .await
            .map_err(|e| format!("fetching {url}: {e}"))?;
        if head.status != 200 {
            return Err(format!("fetching {url}: {}", head.status_line));
        }
        String::from_utf8(body).map_err(|_| format!("{url} is not UTF-8"))
    } else {
        let path = location.strip_prefix("file://").unwrap_or(location);
        std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))
    }
}

#[cfg(test)]
#[path = "pac_tests.rs"]
mod tests;
