//! Prometheus-worded parse errors.
//!
//! `promql-parser` decides whether a query parses; when it does not, its messages carry neither a
//! position nor Prometheus' wording. This module re-reads the query with its own small lexer and
//! recursive-descent checker, modelled on the behaviour of Prometheus' PromQL parser (lexer
//! errors, the grammar's error rules, the checks made while building nodes and the type checks
//! made afterwards), and words the first problem as Prometheus does:
//! `<line>:<col>: parse error: <message>`.
//!
//! It also reads string literals as Go's `strconv.Unquote` would (bytes, not characters), which
//! `promql-parser` cannot: `"\xff"` is the single byte 0xFF, not `ÿ`. [`invalid_utf8_strings`]
//! lists the literals whose bytes are not UTF-8, in source order.

use std::fmt::Write as _;

/// A problem found in a query: byte offset of the offending item and Prometheus' message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub(crate) pos: usize,
    pub(crate) message: String,
}

impl SyntaxError {
    fn new(pos: usize, message: impl Into<String>) -> Self {
        SyntaxError {
            pos,
            message: message.into(),
        }
    }

    /// The error as Prometheus prints it: `line:col: parse error: message`.
    pub(crate) fn render(&self, query: &str) -> String {
        format!(
            "{}: parse error: {}",
            position(query, self.pos),
            self.message
        )
    }
}

/// `line:col` of a byte offset, counted as Prometheus counts it (col is 1-based bytes).
fn position(query: &str, pos: usize) -> String {
    let pos = pos.min(query.len());
    let before = query.as_bytes().get(..pos).unwrap_or_default();
    let line = 1 + before.iter().filter(|b| **b == b'\n').count();
    let last_break = before.iter().rposition(|b| *b == b'\n');
    let col = match last_break {
        Some(index) => pos - index,
        None => pos + 1,
    };
    format!("{line}:{col}")
}

/// The first problem Prometheus would report for `query`, if the checker finds one.
pub(crate) fn check(query: &str) -> Option<SyntaxError> {
    // The lexer runs ahead here, but its error only counts where the parser reaches it:
    // grammar errors before it are reported first, as with Prometheus' lazy lexer.
    let (tokens, lex_error) = match lex(query) {
        Ok(tokens) => (tokens, None),
        Err((tokens, error)) => (tokens, Some(error)),
    };
    let mut parser = Parser::new(query, tokens, lex_error);
    let result = parser.run();
    // Errors recorded while building nodes happened before any later syntax error.
    if let Some(first) = parser.errors.first() {
        return Some(first.clone());
    }
    result.err()
}

/// The string literals outside braces (the ones that become AST string literals): their
/// number, and the `(index, bytes)` of those whose Go unquoting is not UTF-8, in source order.
pub(crate) fn invalid_utf8_strings(query: &str) -> (usize, Vec<(usize, Vec<u8>)>) {
    let tokens = match lex(query) {
        Ok(tokens) | Err((tokens, _)) => tokens,
    };
    let mut depth = 0usize;
    let mut index = 0usize;
    let mut out = Vec::new();
    for token in &tokens {
        match token.kind {
            Kind::LBrace => depth += 1,
            Kind::RBrace => depth = depth.saturating_sub(1),
            Kind::Str if depth == 0 => {
                if let Ok(bytes) = unquote(&token.text)
                    && std::str::from_utf8(&bytes).is_err()
                {
                    out.push((index, bytes));
                }
                index += 1;
            }
            _ => {}
        }
    }
    (index, out)
}

/// `query` with each raw (backtick) string literal that holds a backslash or a carriage return
/// rewritten as the equivalent double-quoted literal, or `None` when there is none.
///
/// Go reads a raw string as it stands: no escape sequences, carriage returns discarded.
/// `promql-parser` reads escape sequences in raw strings too and refuses `` `\d` ``, so such a
/// literal is handed to it double-quoted, with the same content.
pub(crate) fn requote_raw_strings(query: &str) -> Option<String> {
    let tokens = match lex(query) {
        Ok(tokens) | Err((tokens, _)) => tokens,
    };
    let mut out = String::with_capacity(query.len() + 8);
    let mut copied = 0;
    for token in &tokens {
        if token.kind != Kind::Str
            || !token.text.starts_with('`')
            || !token.text.contains(['\\', '\r'])
        {
            continue;
        }
        let Ok(bytes) = unquote(&token.text) else {
            continue;
        };
        let Ok(body) = String::from_utf8(bytes) else {
            continue;
        };
        out.push_str(query.get(copied..token.pos)?);
        out.push_str(&go_quote(&body));
        copied = token.pos + token.text.len();
    }
    if copied == 0 {
        return None;
    }
    out.push_str(query.get(copied..)?);
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Eof,
    Comma,
    LParen,
    RParen,
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    Colon,
    /// `=` (label matching).
    Eql,
    Number,
    Duration,
    Str,
    Ident,
    MetricIdent,
    At,
    /// Arithmetic, comparison, set and regex-match operators (`<op:...>`).
    Op(Op),
    /// Aggregation operators (`<aggr:...>`).
    Aggr,
    /// `bool by group_left group_right ignoring offset on without` (`<...>`).
    Keyword(Kw),
    /// `start` / `end` (shown quoted).
    Preprocessor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eqlc,
    Neq,
    Lss,
    Lte,
    Gtr,
    Gte,
    EqlRegex,
    NeqRegex,
    And,
    Or,
    Unless,
}

impl Op {
    /// Binding strength of a binary operator (higher binds tighter), `None` for match operators.
    fn precedence(self) -> Option<u8> {
        Some(match self {
            Op::Or => 1,
            Op::And | Op::Unless => 2,
            Op::Eqlc | Op::Neq | Op::Lss | Op::Lte | Op::Gtr | Op::Gte => 3,
            Op::Add | Op::Sub => 4,
            Op::Mul | Op::Div | Op::Mod | Op::Atan2 => 5,
            Op::Pow => 6,
            Op::EqlRegex | Op::NeqRegex => return None,
        })
    }

    fn is_comparison(self) -> bool {
        matches!(
            self,
            Op::Eqlc | Op::Neq | Op::Lss | Op::Lte | Op::Gtr | Op::Gte
        )
    }

    fn is_set(self) -> bool {
        matches!(self, Op::And | Op::Or | Op::Unless)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kw {
    Bool,
    By,
    GroupLeft,
    GroupRight,
    Ignoring,
    Offset,
    On,
    Without,
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    pos: usize,
    text: String,
}

impl Token {
    /// How Prometheus names an item in "unexpected ..." messages.
    fn describe(&self) -> String {
        let quoted = || {
            if self.text.chars().count() > 10 {
                let head: String = self.text.chars().take(10).collect();
                format!("{}...", go_quote(&head))
            } else {
                go_quote(&self.text)
            }
        };
        match self.kind {
            Kind::Eof => "end of input".to_string(),
            Kind::Ident => format!("identifier {}", go_quote(&self.text)),
            Kind::MetricIdent => format!("metric identifier {}", go_quote(&self.text)),
            Kind::Str => format!("string {}", quoted()),
            Kind::Number => format!("number {}", quoted()),
            Kind::Duration => format!("duration {}", quoted()),
            Kind::Op(_) | Kind::At => format!("<op:{}>", self.text),
            Kind::Aggr => format!("<aggr:{}>", self.text),
            Kind::Keyword(_) => format!("<{}>", self.text),
            Kind::Comma
            | Kind::LParen
            | Kind::RParen
            | Kind::LBrace
            | Kind::RBrace
            | Kind::LBracket
            | Kind::RBracket
            | Kind::Colon
            | Kind::Eql
            | Kind::Preprocessor => go_quote(&self.text),
        }
    }
}

const AGGREGATORS: [&str; 14] = [
    "sum",
    "avg",
    "count",
    "min",
    "max",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "count_values",
    "quantile",
    "limitk",
    "limit_ratio",
];

fn word_kind(word: &str) -> Kind {
    let lower = word.to_ascii_lowercase();
    match lower.as_str() {
        "and" => Kind::Op(Op::And),
        "or" => Kind::Op(Op::Or),
        "unless" => Kind::Op(Op::Unless),
        "atan2" => Kind::Op(Op::Atan2),
        "offset" => Kind::Keyword(Kw::Offset),
        "by" => Kind::Keyword(Kw::By),
        "without" => Kind::Keyword(Kw::Without),
        "on" => Kind::Keyword(Kw::On),
        "ignoring" => Kind::Keyword(Kw::Ignoring),
        "group_left" => Kind::Keyword(Kw::GroupLeft),
        "group_right" => Kind::Keyword(Kw::GroupRight),
        "bool" => Kind::Keyword(Kw::Bool),
        "start" | "end" => Kind::Preprocessor,
        "inf" | "nan" => Kind::Number,
        other if AGGREGATORS.contains(&other) => Kind::Aggr,
        _ if word.contains(':') => Kind::MetricIdent,
        _ => Kind::Ident,
    }
}

fn is_alpha(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

fn is_alnum(c: char) -> bool {
    is_alpha(c) || c.is_ascii_digit()
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

struct Lexer<'a> {
    input: &'a str,
    pos: usize,
    start: usize,
    tokens: Vec<Token>,
    paren_depth: i64,
    brace_open: bool,
    bracket_open: bool,
    got_colon: bool,
}

type LexResult = Result<Vec<Token>, (Vec<Token>, SyntaxError)>;

/// Splits a query into tokens; on a lexer error, the tokens before it and the error.
fn lex(input: &str) -> LexResult {
    let mut lexer = Lexer {
        input,
        pos: 0,
        start: 0,
        tokens: Vec::new(),
        paren_depth: 0,
        brace_open: false,
        bracket_open: false,
        got_colon: false,
    };
    match lexer.run() {
        Ok(()) => Ok(lexer.tokens),
        Err(message) => {
            let error = SyntaxError::new(lexer.start, message);
            Err((lexer.tokens, error))
        }
    }
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.input
            .get(self.pos..)
            .and_then(|rest| rest.chars().next())
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn accept(&mut self, valid: &str) -> bool {
        match self.peek() {
            Some(c) if valid.contains(c) => {
                self.pos += c.len_utf8();
                true
            }
            _ => false,
        }
    }

    fn accept_run(&mut self, valid: &str) {
        while self.accept(valid) {}
    }

    fn emit(&mut self, kind: Kind) {
        let text = self
            .input
            .get(self.start..self.pos)
            .unwrap_or("")
            .to_string();
        self.tokens.push(Token {
            kind,
            pos: self.start,
            text,
        });
        self.start = self.pos;
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(is_space) {
            self.pos += 1;
        }
        self.start = self.pos;
    }

    fn run(&mut self) -> Result<(), String> {
        loop {
            if self.brace_open {
                self.inside_braces()?;
                continue;
            }
            if self
                .input
                .get(self.pos..)
                .is_some_and(|r| r.starts_with('#'))
            {
                self.comment();
                continue;
            }
            let Some(c) = self.next() else {
                if self.paren_depth != 0 {
                    return Err("unclosed left parenthesis".to_string());
                }
                if self.bracket_open {
                    return Err("unclosed left bracket".to_string());
                }
                self.emit(Kind::Eof);
                return Ok(());
            };
            match c {
                ',' => self.emit(Kind::Comma),
                c if is_space(c) => self.skip_spaces(),
                '*' => self.emit(Kind::Op(Op::Mul)),
                '/' => self.emit(Kind::Op(Op::Div)),
                '%' => self.emit(Kind::Op(Op::Mod)),
                '+' => self.emit(Kind::Op(Op::Add)),
                '-' => self.emit(Kind::Op(Op::Sub)),
                '^' => self.emit(Kind::Op(Op::Pow)),
                '=' => match self.peek() {
                    Some('=') => {
                        self.pos += 1;
                        self.emit(Kind::Op(Op::Eqlc));
                    }
                    Some('~') => {
                        return Err(format!("unexpected character after '=': {}", rune('~')));
                    }
                    _ => self.emit(Kind::Eql),
                },
                '!' => match self.next() {
                    Some('=') => self.emit(Kind::Op(Op::Neq)),
                    other => {
                        return Err(format!(
                            "unexpected character after '!': {}",
                            other.map_or_else(|| "'\u{fffd}'".to_string(), rune)
                        ));
                    }
                },
                '<' => {
                    if self.accept("=") {
                        self.emit(Kind::Op(Op::Lte));
                    } else {
                        self.emit(Kind::Op(Op::Lss));
                    }
                }
                '>' => {
                    if self.accept("=") {
                        self.emit(Kind::Op(Op::Gte));
                    } else {
                        self.emit(Kind::Op(Op::Gtr));
                    }
                }
                c if c.is_ascii_digit()
                    || (c == '.' && self.peek().is_some_and(|n| n.is_ascii_digit())) =>
                {
                    self.pos = self.start;
                    self.number_or_duration()?;
                }
                '"' | '\'' => self.string(c)?,
                '`' => self.raw_string()?,
                c if is_alpha(c) || c == ':' => {
                    if !self.bracket_open {
                        self.pos = self.start;
                        self.keyword_or_identifier();
                    } else if c == ':' {
                        if self.got_colon {
                            return Err(format!("unexpected colon {}", rune(':')));
                        }
                        self.emit(Kind::Colon);
                        self.got_colon = true;
                    } else {
                        return Err(format!(
                            "unexpected character: {}, expected {}",
                            rune(c),
                            rune(':')
                        ));
                    }
                }
                '(' => {
                    self.emit(Kind::LParen);
                    self.paren_depth += 1;
                }
                ')' => {
                    self.emit(Kind::RParen);
                    self.paren_depth -= 1;
                    if self.paren_depth < 0 {
                        // The error replaces the item just emitted; its position is after it.
                        self.tokens.pop();
                        return Err(format!("unexpected right parenthesis {}", rune(')')));
                    }
                }
                '{' => {
                    self.emit(Kind::LBrace);
                    self.brace_open = true;
                }
                '[' => {
                    if self.bracket_open {
                        return Err(format!("unexpected left bracket {}", rune('[')));
                    }
                    self.got_colon = false;
                    self.emit(Kind::LBracket);
                    self.skip_spaces();
                    self.bracket_open = true;
                    self.duration()?;
                }
                ']' => {
                    if !self.bracket_open {
                        return Err(format!("unexpected right bracket {}", rune(']')));
                    }
                    self.emit(Kind::RBracket);
                    self.bracket_open = false;
                }
                '@' => self.emit(Kind::At),
                other => return Err(format!("unexpected character: {}", rune(other))),
            }
        }
    }

    fn comment(&mut self) {
        while let Some(c) = self.peek() {
            if c == '\n' || c == '\r' {
                break;
            }
            self.pos += c.len_utf8();
        }
        // Comments are not items the parser sees.
        self.start = self.pos;
    }

    fn inside_braces(&mut self) -> Result<(), String> {
        if self
            .input
            .get(self.pos..)
            .is_some_and(|r| r.starts_with('#'))
        {
            self.comment();
            return Ok(());
        }
        let Some(c) = self.next() else {
            return Err("unexpected end of input inside braces".to_string());
        };
        match c {
            c if is_space(c) => self.skip_spaces(),
            c if is_alpha(c) => {
                while self.peek().is_some_and(is_alnum) {
                    self.pos += 1;
                }
                self.emit(Kind::Ident);
            }
            ',' => self.emit(Kind::Comma),
            '"' | '\'' => self.string(c)?,
            '`' => self.raw_string()?,
            '=' => {
                if self.accept("~") {
                    self.emit(Kind::Op(Op::EqlRegex));
                } else {
                    self.emit(Kind::Eql);
                }
            }
            '!' => match self.next() {
                Some('~') => self.emit(Kind::Op(Op::NeqRegex)),
                Some('=') => self.emit(Kind::Op(Op::Neq)),
                other => {
                    return Err(format!(
                        "unexpected character after '!' inside braces: {}",
                        other.map_or_else(|| "'\u{fffd}'".to_string(), rune)
                    ));
                }
            },
            '{' => return Err(format!("unexpected left brace {}", rune('{'))),
            '}' => {
                self.emit(Kind::RBrace);
                self.brace_open = false;
            }
            other => {
                return Err(format!(
                    "unexpected character inside braces: {}",
                    rune(other)
                ));
            }
        }
        Ok(())
    }

    fn string(&mut self, quote: char) -> Result<(), String> {
        loop {
            match self.next() {
                Some('\\') => self.escape(quote)?,
                None | Some('\n') => return Err("unterminated quoted string".to_string()),
                Some(c) if c == quote => break,
                Some(_) => {}
            }
        }
        self.emit(Kind::Str);
        Ok(())
    }

    fn escape(&mut self, quote: char) -> Result<(), String> {
        let c = self.next();
        let (mut digits, base, max): (u32, u32, u32) = match c {
            Some('a' | 'b' | 'f' | 'n' | 'r' | 't' | 'v' | '\\') => return Ok(()),
            Some(c) if c == quote => return Ok(()),
            Some('0'..='7') => {
                self.pos -= 1;
                (3, 8, 255)
            }
            Some('x') => (2, 16, 255),
            Some('u') => (4, 16, 0x10FFFF),
            Some('U') => (8, 16, 0x10FFFF),
            None => return Err("escape sequence not terminated".to_string()),
            Some(other) => {
                return Err(format!("unknown escape sequence {}", go_unicode(other)));
            }
        };
        let mut value: u32 = 0;
        while digits > 0 {
            let c = self.next();
            let digit = c.and_then(|c| c.to_digit(16)).filter(|d| *d < base);
            let Some(digit) = digit else {
                return Err(match c {
                    None => "escape sequence not terminated".to_string(),
                    Some(c) => format!("illegal character {} in escape sequence", go_unicode(c)),
                });
            };
            value = value.saturating_mul(base).saturating_add(digit);
            digits -= 1;
        }
        if value > max || (0xD800..0xE000).contains(&value) {
            return Err("escape sequence is an invalid Unicode code point".to_string());
        }
        Ok(())
    }

    fn raw_string(&mut self) -> Result<(), String> {
        loop {
            match self.next() {
                None => return Err("unterminated raw string".to_string()),
                Some('`') => break,
                Some(_) => {}
            }
        }
        self.emit(Kind::Str);
        Ok(())
    }

    /// Scans a number; true if it ends where a number may end.
    fn scan_number(&mut self) -> bool {
        let mut digits = "0123456789";
        if self.accept("0") && self.accept("xX") {
            digits = "0123456789abcdefABCDEF";
        }
        self.accept_run(digits);
        if self.accept(".") {
            self.accept_run(digits);
        }
        if self.accept("eE") {
            self.accept("+-");
            self.accept_run("0123456789");
        }
        !self.peek().is_some_and(is_alnum)
    }

    /// Accepts the unit part of a duration after its leading number.
    fn accept_remaining_duration(&mut self) -> bool {
        if !self.accept("smhdwy") {
            return false;
        }
        self.accept("s");
        while self.accept("0123456789") {
            self.accept_run("0123456789");
            if !self.accept("smhdwy") {
                return false;
            }
            self.accept("s");
        }
        // The character after the duration is consumed and given back, as Prometheus does.
        match self.peek() {
            Some(c) if is_alnum(c) => {
                self.pos += c.len_utf8();
                false
            }
            _ => true,
        }
    }

    fn number_or_duration(&mut self) -> Result<(), String> {
        if self.scan_number() {
            self.emit(Kind::Number);
            return Ok(());
        }
        if self.accept_remaining_duration() {
            self.emit(Kind::Duration);
            return Ok(());
        }
        Err(format!(
            "bad number or duration syntax: {}",
            go_quote(self.input.get(self.start..self.pos).unwrap_or(""))
        ))
    }

    fn duration(&mut self) -> Result<(), String> {
        if self.scan_number() {
            return Err("missing unit character in duration".to_string());
        }
        if !self.accept_remaining_duration() {
            return Err(format!(
                "bad duration syntax: {}",
                go_quote(self.input.get(self.start..self.pos).unwrap_or(""))
            ));
        }
        self.emit(Kind::Duration);
        Ok(())
    }

    fn keyword_or_identifier(&mut self) {
        while self.peek().is_some_and(|c| is_alnum(c) || c == ':') {
            self.pos += 1;
        }
        let word = self.input.get(self.start..self.pos).unwrap_or("");
        let kind = word_kind(word);
        self.emit(kind);
    }
}

// ---------------------------------------------------------------------------------------------
// Go quoting and unquoting
// ---------------------------------------------------------------------------------------------

fn go_escape(c: char, quote: char, out: &mut String) {
    match c {
        '\x07' => out.push_str("\\a"),
        '\x08' => out.push_str("\\b"),
        '\x0c' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\x0b' => out.push_str("\\v"),
        '\\' => out.push_str("\\\\"),
        c if c == quote => {
            out.push('\\');
            out.push(c);
        }
        c if (c as u32) < 0x20 || c as u32 == 0x7f => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if c.is_control() => {
            if (c as u32) < 0x10000 {
                let _ = write!(out, "\\u{:04x}", c as u32);
            } else {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
        c => out.push(c),
    }
}

/// Go's `%q` of a string.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        go_escape(c, '"', &mut out);
    }
    out.push('"');
    out
}

/// Go's `%q` of a byte string that may not be UTF-8 (invalid bytes as `\xNN`).
pub(crate) fn go_quote_bytes(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            go_escape(c, '"', &mut out);
        }
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out.push('"');
    out
}

/// Go's `%q` of a rune.
fn rune(c: char) -> String {
    let mut out = String::from("'");
    go_escape(c, '\'', &mut out);
    out.push('\'');
    out
}

/// Go's `%#U` of a rune: `U+007A 'z'`.
fn go_unicode(c: char) -> String {
    if c.is_control() {
        format!("U+{:04X}", c as u32)
    } else {
        format!("U+{:04X} '{c}'", c as u32)
    }
}

/// Unquotes a string literal as Go's `strconv.Unquote` does, returning bytes.
pub(crate) fn unquote(text: &str) -> Result<Vec<u8>, ()> {
    let mut chars = text.chars();
    let quote = chars.next().ok_or(())?;
    let body = text
        .get(quote.len_utf8()..text.len().saturating_sub(quote.len_utf8()))
        .ok_or(())?;
    if !text.ends_with(quote) || text.len() < 2 {
        return Err(());
    }
    if quote == '`' {
        return Ok(body.replace('\r', "").into_bytes());
    }
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body.chars().peekable();
    while let Some(c) = rest.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let escape = rest.next().ok_or(())?;
        let simple = match escape {
            'a' => Some(0x07u8),
            'b' => Some(0x08),
            'f' => Some(0x0c),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(0x0b),
            '\\' => Some(b'\\'),
            '\'' | '"' => Some(escape as u8),
            _ => None,
        };
        if let Some(byte) = simple {
            out.push(byte);
            continue;
        }
        let (count, base, is_byte) = match escape {
            'x' => (2, 16, true),
            '0'..='7' => (2, 8, true),
            'u' => (4, 16, false),
            'U' => (8, 16, false),
            _ => return Err(()),
        };
        let mut value: u32 = if escape.is_ascii_digit() {
            escape.to_digit(8).ok_or(())?
        } else {
            0
        };
        for _ in 0..count {
            let digit = rest.next().and_then(|d| d.to_digit(base)).ok_or(())?;
            value = value * base + digit;
        }
        if is_byte {
            out.push(u8::try_from(value).map_err(|_| ())?);
        } else {
            let c = char::from_u32(value).ok_or(())?;
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Parser and checks
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Scalar,
    Vector,
    Matrix,
    Str,
}

impl Type {
    /// Prometheus' `DocumentedType`.
    fn documented(self) -> &'static str {
        match self {
            Type::Scalar => "scalar",
            Type::Vector => "instant vector",
            Type::Matrix => "range vector",
            Type::Str => "string",
        }
    }

    /// Prometheus' `ValueType` string.
    fn plain(self) -> &'static str {
        match self {
            Type::Scalar => "scalar",
            Type::Vector => "vector",
            Type::Matrix => "matrix",
            Type::Str => "string",
        }
    }
}

#[derive(Debug)]
enum Node {
    Number,
    Str,
    Selector {
        name: Option<String>,
        /// `(name, op, value)` of every matcher written in braces.
        matchers: Vec<(String, Op, String)>,
        offset: bool,
        at: bool,
    },
    Matrix {
        inner: Box<Expr>,
    },
    Subquery {
        inner: Box<Expr>,
        offset: bool,
        at: bool,
    },
    Paren(Box<Expr>),
    Unary(Box<Expr>),
    Binary {
        op: Op,
        op_pos: usize,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
        bool_modifier: bool,
        /// `(on, labels)` when `on(...)`/`ignoring(...)` is given.
        matching: Option<(bool, Vec<String>)>,
        /// `group_left`/`group_right` labels.
        group: Option<Vec<String>>,
    },
    Call {
        name: String,
        args: Vec<Expr>,
    },
    Aggregate {
        name: String,
        param: Option<Box<Expr>>,
        expr: Option<Box<Expr>>,
    },
}

#[derive(Debug)]
struct Expr {
    start: usize,
    node: Node,
}

/// `(argument types, variadic, return type)` of a function: variadic 0 means exactly the
/// listed arguments, N > 0 up to N more of the last type, -1 any number more.
fn function_signature(name: &str) -> Option<(&'static [Type], i32, Type)> {
    use Type::{Matrix as M, Scalar as S, Str as T, Vector as V};
    Some(match name {
        "abs" | "acos" | "acosh" | "asin" | "asinh" | "atan" | "atanh" | "ceil" | "cos"
        | "cosh" | "deg" | "exp" | "floor" | "histogram_avg" | "histogram_count"
        | "histogram_sum" | "histogram_stddev" | "histogram_stdvar" | "ln" | "log10" | "log2"
        | "rad" | "sgn" | "sin" | "sinh" | "sort" | "sort_desc" | "sqrt" | "tan" | "tanh"
        | "timestamp" | "absent" | "start_timestamp" => (&[V], 0, V),
        "absent_over_time"
        | "avg_over_time"
        | "changes"
        | "count_over_time"
        | "delta"
        | "deriv"
        | "first_over_time"
        | "idelta"
        | "increase"
        | "irate"
        | "last_over_time"
        | "mad_over_time"
        | "max_over_time"
        | "min_over_time"
        | "ts_of_first_over_time"
        | "ts_of_max_over_time"
        | "ts_of_min_over_time"
        | "ts_of_last_over_time"
        | "present_over_time"
        | "rate"
        | "resets"
        | "stddev_over_time"
        | "stdvar_over_time"
        | "sum_over_time" => (&[M], 0, V),
        "clamp" => (&[V, S, S], 0, V),
        "clamp_max" | "clamp_min" => (&[V, S], 0, V),
        "days_in_month" | "day_of_month" | "day_of_week" | "day_of_year" | "hour" | "minute"
        | "month" | "year" => (&[V], 1, V),
        "end" | "pi" | "range" | "start" | "step" | "time" => (&[], 0, S),
        "histogram_fraction" => (&[S, S, V], 0, V),
        "histogram_quantile" => (&[S, V], 0, V),
        "histogram_quantiles" => (&[V, T, S, S], 9, V),
        "double_exponential_smoothing" | "holt_winters" => (&[M, S, S], 0, V),
        "info" => (&[V, V], 1, V),
        "label_replace" => (&[V, T, T, T, T], 0, V),
        "label_join" => (&[V, T, T, T], -1, V),
        "max_of" | "min_of" => (&[S, S], 0, S),
        "predict_linear" => (&[M, S], 0, V),
        "quantile_over_time" => (&[S, M], 0, V),
        "round" => (&[V, S], 1, V),
        "scalar" => (&[V], 0, S),
        "sort_by_label" | "sort_by_label_desc" => (&[V, T], -1, V),
        "vector" => (&[S], 0, V),
        _ => return None,
    })
}

struct Parser<'a> {
    input: &'a str,
    tokens: Vec<Token>,
    index: usize,
    /// The lexer error that ends the token stream, if any.
    lex_error: Option<SyntaxError>,
    /// Errors found while building nodes (reported before type errors).
    errors: Vec<SyntaxError>,
    /// Number of enclosing aggregation bodies (their error rule catches syntax errors).
    aggregation_depth: usize,
}

type Parsed<T> = Result<T, SyntaxError>;

impl<'a> Parser<'a> {
    fn new(input: &'a str, tokens: Vec<Token>, lex_error: Option<SyntaxError>) -> Self {
        Parser {
            input,
            tokens,
            index: 0,
            lex_error,
            errors: Vec::new(),
            aggregation_depth: 0,
        }
    }

    /// Parses the whole query; a syntax error stops it, other errors are collected.
    fn run(&mut self) -> Parsed<()> {
        if self.peek_kind() == Some(Kind::Eof) {
            return Err(SyntaxError::new(0, "no expression found in input"));
        }
        let expr = self.expr(0)?;
        if self.peek_kind() != Some(Kind::Eof) {
            return Err(self.unexpected(None, None));
        }
        if self.errors.is_empty() {
            self.check(&expr);
        }
        Ok(())
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.index)
    }

    /// The next token's kind; `None` where the lexer stopped with an error.
    fn peek_kind(&self) -> Option<Kind> {
        self.peek().map(|t| t.kind)
    }

    fn advance(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.index).cloned();
        if token.is_some() {
            self.index += 1;
        }
        token
    }

    /// Prometheus' "unexpected <item>[ in <context>][, expected <expected>]" for the next token;
    /// a lexer error in its place is reported instead.
    fn unexpected(&self, context: Option<&str>, expected: Option<&str>) -> SyntaxError {
        let Some(token) = self.peek() else {
            return self
                .lex_error
                .clone()
                .unwrap_or_else(|| SyntaxError::new(self.input.len(), "unexpected end of input"));
        };
        let context = context.or(if self.aggregation_depth > 0 {
            Some("aggregation")
        } else {
            None
        });
        let mut message = format!("unexpected {}", token.describe());
        if let Some(context) = context {
            let _ = write!(message, " in {context}");
        }
        if let Some(expected) = expected {
            let _ = write!(message, ", expected {expected}");
        }
        SyntaxError::new(token.pos, message)
    }

    fn expr(&mut self, min_precedence: u8) -> Parsed<Expr> {
        let mut lhs = self.unary()?;
        loop {
            let Some(Kind::Op(op)) = self.peek_kind() else {
                return Ok(lhs);
            };
            let Some(precedence) = op.precedence() else {
                return Ok(lhs);
            };
            if precedence < min_precedence {
                return Ok(lhs);
            }
            let op_pos = self.advance().map_or(0, |t| t.pos);
            let mut bool_modifier = false;
            let mut matching = None;
            let mut group = None;
            if self.peek_kind() == Some(Kind::Keyword(Kw::Bool)) {
                self.advance();
                bool_modifier = true;
            }
            if let Some(Kind::Keyword(kw @ (Kw::On | Kw::Ignoring))) = self.peek_kind() {
                self.advance();
                matching = Some((kw == Kw::On, self.grouping_labels()?));
                if let Some(Kind::Keyword(Kw::GroupLeft | Kw::GroupRight)) = self.peek_kind() {
                    self.advance();
                    group = Some(if self.peek_kind() == Some(Kind::LParen) {
                        self.grouping_labels()?
                    } else {
                        Vec::new()
                    });
                }
            }
            let next = if op == Op::Pow {
                precedence
            } else {
                precedence + 1
            };
            let rhs = self.expr(next)?;
            lhs = Expr {
                start: lhs.start,
                node: Node::Binary {
                    op,
                    op_pos,
                    lhs: Box::new(lhs),
                    rhs: Box::new(rhs),
                    bool_modifier,
                    matching,
                    group,
                },
            };
        }
    }

    fn unary(&mut self) -> Parsed<Expr> {
        if let Some(Kind::Op(Op::Add | Op::Sub)) = self.peek_kind() {
            let start = self.advance().map_or(0, |t| t.pos);
            let operand = self.expr(Op::Pow.precedence().unwrap_or(6))?;
            if matches!(operand.node, Node::Number) {
                return Ok(Expr {
                    start,
                    node: Node::Number,
                });
            }
            return Ok(Expr {
                start,
                node: Node::Unary(Box::new(operand)),
            });
        }
        let primary = self.primary()?;
        self.postfix(primary)
    }

    fn primary(&mut self) -> Parsed<Expr> {
        let Some(token) = self.peek().cloned() else {
            return Err(self.unexpected(None, None));
        };
        match token.kind {
            Kind::Number => {
                self.advance();
                let lower = token.text.to_ascii_lowercase();
                let value = parse_go_number(&token.text);
                if value.is_none() || (value.is_some_and(f64::is_infinite) && lower != "inf") {
                    self.errors.push(SyntaxError::new(
                        token.pos,
                        format!(
                            "error parsing number: strconv.ParseFloat: parsing {}: {}",
                            go_quote(&token.text),
                            if value.is_none() {
                                "invalid syntax"
                            } else {
                                "value out of range"
                            }
                        ),
                    ));
                }
                Ok(Expr {
                    start: token.pos,
                    node: Node::Number,
                })
            }
            Kind::Str => {
                self.advance();
                Ok(Expr {
                    start: token.pos,
                    node: Node::Str,
                })
            }
            Kind::LParen => {
                self.advance();
                let inner = self.expr(0)?;
                if self.peek_kind() != Some(Kind::RParen) {
                    return Err(self.unexpected(None, None));
                }
                self.advance();
                Ok(Expr {
                    start: token.pos,
                    node: Node::Paren(Box::new(inner)),
                })
            }
            Kind::LBrace => self.selector(None, token.pos),
            Kind::Aggr => {
                let after = self.tokens.get(self.index + 1).map(|t| t.kind);
                if matches!(
                    after,
                    Some(Kind::LParen | Kind::Keyword(Kw::By | Kw::Without))
                ) {
                    self.aggregation()
                } else {
                    self.advance();
                    self.selector(Some(token.text), token.pos)
                }
            }
            Kind::Ident => {
                self.advance();
                if self.peek_kind() == Some(Kind::LParen) {
                    self.call(token)
                } else {
                    self.selector(Some(token.text), token.pos)
                }
            }
            Kind::MetricIdent
            | Kind::Preprocessor
            | Kind::Keyword(Kw::By | Kw::Without | Kw::Offset)
            | Kind::Op(Op::And | Op::Or | Op::Unless) => {
                self.advance();
                self.selector(Some(token.text), token.pos)
            }
            _ => Err(self.unexpected(None, None)),
        }
    }

    fn postfix(&mut self, mut expr: Expr) -> Parsed<Expr> {
        loop {
            match self.peek_kind() {
                Some(Kind::LBracket) => expr = self.range_or_subquery(expr)?,
                Some(Kind::Keyword(Kw::Offset)) => {
                    self.advance();
                    if self.peek_kind() == Some(Kind::Op(Op::Sub)) {
                        self.advance();
                    }
                    if self.peek_kind() != Some(Kind::Duration) {
                        return Err(self.unexpected(Some("offset"), Some("duration")));
                    }
                    let duration = self.advance();
                    self.check_duration(duration);
                    self.modify(&mut expr, true);
                }
                Some(Kind::At) => {
                    self.advance();
                    let mut value = None;
                    match self.peek_kind() {
                        Some(Kind::Op(Op::Add | Op::Sub)) => {
                            let negative = self.peek_kind() == Some(Kind::Op(Op::Sub));
                            self.advance();
                            if self.peek_kind() != Some(Kind::Number) {
                                return Err(self.unexpected(Some("@"), Some("timestamp")));
                            }
                            value = self
                                .advance()
                                .and_then(|t| parse_go_number(&t.text))
                                .map(|v| if negative { -v } else { v });
                        }
                        Some(Kind::Number) => {
                            value = self.advance().and_then(|t| parse_go_number(&t.text));
                        }
                        Some(Kind::Preprocessor) => {
                            self.advance();
                            if self.peek_kind() != Some(Kind::LParen) {
                                return Err(self.unexpected(Some("@"), Some("timestamp")));
                            }
                            self.advance();
                            if self.peek_kind() != Some(Kind::RParen) {
                                return Err(self.unexpected(Some("@"), Some("timestamp")));
                            }
                            self.advance();
                        }
                        _ => return Err(self.unexpected(Some("@"), Some("timestamp"))),
                    }
                    if let Some(ts) = value
                        && (!ts.is_finite() || ts >= i64::MAX as f64 || ts <= i64::MIN as f64)
                    {
                        self.errors.push(SyntaxError::new(
                            expr.start,
                            format!("timestamp out of bounds for @ modifier: {}", go_float(ts)),
                        ));
                    }
                    self.modify(&mut expr, false);
                }
                _ => return Ok(expr),
            }
        }
    }

    /// Records an `offset` (`is_offset`) or `@` on `expr`, with Prometheus' checks.
    fn modify(&mut self, expr: &mut Expr, is_offset: bool) {
        let start = expr.start;
        let slot = match &mut expr.node {
            Node::Selector { offset, at, .. } | Node::Subquery { offset, at, .. } => {
                Some(if is_offset { offset } else { at })
            }
            Node::Matrix { inner } => match &mut inner.node {
                Node::Selector { offset, at, .. } => Some(if is_offset { offset } else { at }),
                _ => {
                    self.errors.push(SyntaxError::new(
                        start,
                        "ranges only allowed for vector selectors",
                    ));
                    return;
                }
            },
            _ => None,
        };
        let Some(slot) = slot else {
            self.errors.push(SyntaxError::new(
                start,
                if is_offset {
                    "offset modifier must be preceded by an instant vector selector or range vector selector or a subquery"
                } else {
                    "@ modifier must be preceded by an instant vector selector or range vector selector or a subquery"
                },
            ));
            return;
        };
        if *slot {
            self.errors.push(SyntaxError::new(
                start,
                if is_offset {
                    "offset may not be set multiple times"
                } else {
                    "@ <timestamp> may not be set multiple times"
                },
            ));
        }
        *slot = true;
    }

    fn check_duration(&mut self, token: Option<Token>) {
        let Some(token) = token else { return };
        match duration_ms(&token.text) {
            None => self.errors.push(SyntaxError::new(
                token.pos,
                format!("not a valid duration string: {}", go_quote(&token.text)),
            )),
            Some(0) => self.errors.push(SyntaxError::new(
                token.pos,
                "duration must be greater than 0",
            )),
            Some(_) => {}
        }
    }

    fn range_or_subquery(&mut self, expr: Expr) -> Parsed<Expr> {
        let open = self.advance().map_or(0, |t| t.pos);
        if self.peek_kind() != Some(Kind::Duration) {
            return Err(self.unexpected(Some("subquery selector"), Some("duration")));
        }
        let range = self.advance();
        self.check_duration(range);
        match self.peek_kind() {
            Some(Kind::RBracket) => {
                self.advance();
                let message = match &expr.node {
                    Node::Selector { offset: true, .. } => {
                        Some("no offset modifiers allowed before range")
                    }
                    Node::Selector { at: true, .. } => Some("no @ modifiers allowed before range"),
                    Node::Selector { .. } => None,
                    _ => Some("ranges only allowed for vector selectors"),
                };
                if let Some(message) = message {
                    self.errors.push(SyntaxError::new(open, message));
                }
                Ok(Expr {
                    start: expr.start,
                    node: Node::Matrix {
                        inner: Box::new(expr),
                    },
                })
            }
            Some(Kind::Colon) => {
                self.advance();
                match self.peek_kind() {
                    Some(Kind::RBracket) => {}
                    Some(Kind::Duration) => {
                        let step = self.advance();
                        self.check_duration(step);
                        if self.peek_kind() != Some(Kind::RBracket) {
                            return Err(self.unexpected(Some("subquery selector"), Some("\"]\"")));
                        }
                    }
                    _ => {
                        return Err(
                            self.unexpected(Some("subquery selector"), Some("duration or \"]\""))
                        );
                    }
                }
                self.advance();
                Ok(Expr {
                    start: expr.start,
                    node: Node::Subquery {
                        inner: Box::new(expr),
                        offset: false,
                        at: false,
                    },
                })
            }
            _ => Err(self.unexpected(Some("subquery or range"), Some("\":\" or \"]\""))),
        }
    }

    /// `( label, ... )` after `by`, `without`, `on`, `ignoring`, `group_left`, `group_right`.
    fn grouping_labels(&mut self) -> Parsed<Vec<String>> {
        if self.peek_kind() != Some(Kind::LParen) {
            return Err(self.unexpected(Some("grouping opts"), Some("\"(\"")));
        }
        self.advance();
        let mut labels = Vec::new();
        if self.peek_kind() == Some(Kind::RParen) {
            self.advance();
            return Ok(labels);
        }
        loop {
            match self.peek_kind() {
                Some(
                    Kind::Ident
                    | Kind::Aggr
                    | Kind::Keyword(_)
                    | Kind::Preprocessor
                    | Kind::Op(Op::And | Op::Or | Op::Unless | Op::Atan2),
                ) => {
                    if let Some(token) = self.advance() {
                        labels.push(token.text);
                    }
                }
                Some(Kind::Str) => {
                    // A quoted (UTF-8) label name.
                    if let Some(token) = self.advance() {
                        let name = unquote(&token.text)
                            .map(|b| String::from_utf8_lossy(&b).into_owned())
                            .unwrap_or_default();
                        labels.push(name);
                    }
                }
                _ => return Err(self.unexpected(Some("grouping opts"), Some("label"))),
            }
            match self.peek_kind() {
                Some(Kind::Comma) => {
                    self.advance();
                    if self.peek_kind() == Some(Kind::RParen) {
                        self.advance();
                        return Ok(labels);
                    }
                }
                Some(Kind::RParen) => {
                    self.advance();
                    return Ok(labels);
                }
                _ => {
                    return Err(self.unexpected(Some("grouping opts"), Some("\",\" or \")\"")));
                }
            }
        }
    }

    /// `( expr, ... )`; `None` for `()`. Returns the arguments.
    fn call_body(&mut self) -> Parsed<Vec<Expr>> {
        if self.peek_kind() != Some(Kind::LParen) {
            return Err(self.unexpected(None, None));
        }
        self.advance();
        let mut args = Vec::new();
        if self.peek_kind() == Some(Kind::RParen) {
            self.advance();
            return Ok(args);
        }
        loop {
            args.push(self.expr(0)?);
            match self.peek_kind() {
                Some(Kind::Comma) => {
                    let comma = self.advance().map_or(0, |t| t.pos);
                    if self.peek_kind() == Some(Kind::RParen) {
                        self.errors.push(SyntaxError::new(
                            comma,
                            "trailing commas not allowed in function call args",
                        ));
                        self.advance();
                        return Ok(args);
                    }
                    if self
                        .peek_kind()
                        .is_some_and(|kind| !starts_expression(kind))
                    {
                        // Prometheus' grammar closes the argument list at the comma before it
                        // looks at what follows, so the comma is what it reports.
                        self.errors.push(SyntaxError::new(
                            comma,
                            "trailing commas not allowed in function call args",
                        ));
                        return Err(self.unexpected(None, None));
                    }
                }
                Some(Kind::RParen) => {
                    self.advance();
                    return Ok(args);
                }
                _ => return Err(self.unexpected(None, None)),
            }
        }
    }

    fn call(&mut self, name: Token) -> Parsed<Expr> {
        let args = self.call_body()?;
        if function_signature(&name.text).is_none() {
            self.errors.push(SyntaxError::new(
                name.pos,
                format!("unknown function with name {}", go_quote(&name.text)),
            ));
        }
        Ok(Expr {
            start: name.pos,
            node: Node::Call {
                name: name.text,
                args,
            },
        })
    }

    fn aggregation(&mut self) -> Parsed<Expr> {
        let op = self.advance().unwrap_or(Token {
            kind: Kind::Aggr,
            pos: 0,
            text: String::new(),
        });
        self.aggregation_depth += 1;
        let result = self.aggregation_rest(&op);
        self.aggregation_depth -= 1;
        let args = result?;
        let name = op.text.to_ascii_lowercase();
        let mut node = Node::Aggregate {
            name: name.clone(),
            param: None,
            expr: None,
        };
        if args.is_empty() {
            self.errors.push(SyntaxError::new(
                op.pos,
                "no arguments for aggregate expression provided",
            ));
        } else {
            let wanted = if matches!(
                name.as_str(),
                "topk" | "bottomk" | "count_values" | "quantile" | "limitk" | "limit_ratio"
            ) {
                2
            } else {
                1
            };
            if args.len() != wanted {
                self.errors.push(SyntaxError::new(
                    op.pos,
                    format!(
                        "wrong number of arguments for aggregate expression provided, expected {wanted}, got {}",
                        args.len()
                    ),
                ));
            } else {
                let mut args = args.into_iter();
                let param = if wanted == 2 { args.next() } else { None };
                node = Node::Aggregate {
                    name,
                    param: param.map(Box::new),
                    expr: args.next().map(Box::new),
                };
            }
        }
        Ok(Expr {
            start: op.pos,
            node,
        })
    }

    fn aggregation_rest(&mut self, _op: &Token) -> Parsed<Vec<Expr>> {
        let mut modifier_seen = false;
        if let Some(Kind::Keyword(Kw::By | Kw::Without)) = self.peek_kind() {
            self.advance();
            self.grouping_labels()?;
            modifier_seen = true;
        }
        if self.peek_kind() != Some(Kind::LParen) {
            return Err(self.unexpected(Some("aggregation"), None));
        }
        let args = self.call_body()?;
        if !modifier_seen && let Some(Kind::Keyword(Kw::By | Kw::Without)) = self.peek_kind() {
            self.advance();
            self.grouping_labels()?;
        }
        Ok(args)
    }

    fn selector(&mut self, name: Option<String>, start: usize) -> Parsed<Expr> {
        let mut matchers = Vec::new();
        if self.peek_kind() == Some(Kind::LBrace) {
            self.advance();
            self.label_matchers(&mut matchers)?;
        }
        Ok(Expr {
            start,
            node: Node::Selector {
                name,
                matchers,
                offset: false,
                at: false,
            },
        })
    }

    fn label_matchers(&mut self, out: &mut Vec<(String, Op, String)>) -> Parsed<()> {
        if self.peek_kind() == Some(Kind::RBrace) {
            self.advance();
            return Ok(());
        }
        loop {
            let label = match self.peek_kind() {
                Some(Kind::Ident) => self.advance(),
                Some(Kind::Str) => {
                    // A quoted label name (Prometheus 3), or `{"metric"}`.
                    let token = self.advance();
                    if matches!(self.peek_kind(), Some(Kind::Comma | Kind::RBrace)) {
                        if let Some(token) = token {
                            let name = unquote(&token.text)
                                .map(|b| String::from_utf8_lossy(&b).into_owned())
                                .unwrap_or_default();
                            out.push((prom_model::METRIC_NAME.to_string(), Op::Eqlc, name));
                        }
                        None
                    } else {
                        token
                    }
                }
                _ => {
                    return Err(
                        self.unexpected(Some("label matching"), Some("identifier or \"}\""))
                    );
                }
            };
            if let Some(label) = label {
                let op = match self.peek_kind() {
                    Some(Kind::Eql) => Op::Eqlc,
                    Some(Kind::Op(op @ (Op::Neq | Op::EqlRegex | Op::NeqRegex))) => op,
                    _ => {
                        return Err(self
                            .unexpected(Some("label matching"), Some("label matching operator")));
                    }
                };
                self.advance();
                if self.peek_kind() != Some(Kind::Str) {
                    return Err(self.unexpected(Some("label matching"), Some("string")));
                }
                let value = self.advance().map(|t| t.text).unwrap_or_default();
                let value = unquote(&value)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                let name = if label.kind == Kind::Str {
                    unquote(&label.text)
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default()
                } else {
                    label.text.clone()
                };
                if matches!(op, Op::EqlRegex | Op::NeqRegex)
                    && let Err(message) = check_regex(&value)
                {
                    self.errors.push(SyntaxError::new(label.pos, message));
                }
                out.push((name, op, value));
            }
            match self.peek_kind() {
                Some(Kind::Comma) => {
                    self.advance();
                    if self.peek_kind() == Some(Kind::RBrace) {
                        self.advance();
                        return Ok(());
                    }
                }
                Some(Kind::RBrace) => {
                    self.advance();
                    return Ok(());
                }
                _ => {
                    return Err(self.unexpected(Some("label matching"), Some("\",\" or \"}\"")));
                }
            }
        }
    }

    // -- type checks, after a successful parse ------------------------------------------------

    fn error(&mut self, pos: usize, message: String) {
        self.errors.push(SyntaxError::new(pos, message));
    }

    fn expect_type(&mut self, expr: &Expr, want: Type, context: &str) {
        let got = self.check(expr);
        if got != want {
            self.error(
                expr.start,
                format!(
                    "expected type {} in {context}, got {}",
                    want.documented(),
                    got.documented()
                ),
            );
        }
    }

    fn check(&mut self, expr: &Expr) -> Type {
        match &expr.node {
            Node::Number => Type::Scalar,
            Node::Str => Type::Str,
            Node::Paren(inner) => self.check(inner),
            Node::Matrix { inner } => {
                self.check(inner);
                Type::Matrix
            }
            Node::Subquery { inner, .. } => {
                let ty = self.check(inner);
                if ty != Type::Vector {
                    self.error(
                        expr.start,
                        format!(
                            "subquery is only allowed on instant vector, got {} instead",
                            ty.plain()
                        ),
                    );
                }
                Type::Matrix
            }
            Node::Unary(inner) => {
                let ty = self.check(inner);
                if ty != Type::Scalar && ty != Type::Vector {
                    self.error(
                        expr.start,
                        format!(
                            "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                            go_quote(ty.documented())
                        ),
                    );
                }
                ty
            }
            Node::Selector { name, matchers, .. } => {
                if let Some(name) = name {
                    for (label, _, value) in matchers {
                        if label == prom_model::METRIC_NAME {
                            self.error(
                                expr.start,
                                format!(
                                    "metric name must not be set twice: {} or {}",
                                    go_quote(name),
                                    go_quote(value)
                                ),
                            );
                        }
                    }
                } else if !matchers
                    .iter()
                    .any(|(_, op, value)| !matches_empty(*op, value))
                {
                    self.error(
                        expr.start,
                        "vector selector must contain at least one non-empty matcher".to_string(),
                    );
                }
                Type::Vector
            }
            Node::Aggregate {
                name,
                param,
                expr: inner,
            } => {
                if let Some(inner) = inner {
                    self.expect_type(inner, Type::Vector, "aggregation expression");
                }
                if let Some(param) = param {
                    let want = if name == "count_values" {
                        Type::Str
                    } else {
                        Type::Scalar
                    };
                    self.expect_type(param, want, "aggregation parameter");
                }
                Type::Vector
            }
            Node::Call { name, args } => {
                let Some((types, variadic, ret)) = function_signature(name) else {
                    return Type::Vector;
                };
                let count = args.len();
                if variadic == 0 {
                    if types.len() != count {
                        self.error(
                            expr.start,
                            format!(
                                "expected {} argument(s) in call to {}, got {count}",
                                types.len(),
                                go_quote(name)
                            ),
                        );
                    }
                } else {
                    let required = types.len().saturating_sub(1);
                    if required > count {
                        self.error(
                            expr.start,
                            format!(
                                "expected at least {required} argument(s) in call to {}, got {count}",
                                go_quote(name)
                            ),
                        );
                    } else if variadic > 0 {
                        let most = required + usize::try_from(variadic).unwrap_or(0);
                        if most < count {
                            self.error(
                                expr.start,
                                format!(
                                    "expected at most {most} argument(s) in call to {}, got {count}",
                                    go_quote(name)
                                ),
                            );
                        }
                    }
                }
                let context = format!("call to function {}", go_quote(name));
                for (index, arg) in args.iter().enumerate() {
                    let want = match types.get(index) {
                        Some(want) => *want,
                        None if variadic == 0 => break,
                        None => match types.last() {
                            Some(last) => *last,
                            None => break,
                        },
                    };
                    self.expect_type(arg, want, &context);
                }
                ret
            }
            Node::Binary {
                op,
                op_pos,
                lhs,
                rhs,
                bool_modifier,
                matching,
                group,
            } => {
                let lt = self.check(lhs);
                let rt = self.check(rhs);
                if *bool_modifier && !op.is_comparison() {
                    self.error(
                        *op_pos,
                        "bool modifier can only be used on comparison operators".to_string(),
                    );
                }
                if op.is_comparison() && !bool_modifier && lt == Type::Scalar && rt == Type::Scalar
                {
                    self.error(
                        *op_pos,
                        "comparisons between scalars must use BOOL modifier".to_string(),
                    );
                }
                if let (Some((true, on)), Some(include)) = (matching, group) {
                    for label in on {
                        if include.contains(label) {
                            self.error(
                                *op_pos,
                                format!(
                                    "label {} must not occur in ON and GROUP clause at once",
                                    go_quote(label)
                                ),
                            );
                        }
                    }
                }
                if lt != Type::Scalar && lt != Type::Vector {
                    self.error(
                        lhs.start,
                        "binary expression must contain only scalar and instant vector types"
                            .to_string(),
                    );
                }
                if rt != Type::Scalar && rt != Type::Vector {
                    self.error(
                        rhs.start,
                        "binary expression must contain only scalar and instant vector types"
                            .to_string(),
                    );
                }
                if lt != Type::Vector || rt != Type::Vector {
                    if matching
                        .as_ref()
                        .is_some_and(|(_, labels)| !labels.is_empty())
                    {
                        self.error(
                            expr.start,
                            "vector matching only allowed between instant vectors".to_string(),
                        );
                    }
                } else if op.is_set() && group.is_some() {
                    self.error(
                        expr.start,
                        format!(
                            "no grouping allowed for {} operation",
                            go_quote(op_name(*op))
                        ),
                    );
                    self.error(
                        expr.start,
                        "set operations must always be many-to-many".to_string(),
                    );
                }
                if (lt == Type::Scalar || rt == Type::Scalar) && op.is_set() {
                    self.error(
                        expr.start,
                        format!(
                            "set operator {} not allowed in binary scalar expression",
                            go_quote(op_name(*op))
                        ),
                    );
                }
                if lt == Type::Scalar && rt == Type::Scalar {
                    Type::Scalar
                } else {
                    Type::Vector
                }
            }
        }
    }
}

/// Whether an expression can begin with a token of this kind.
fn starts_expression(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Number
            | Kind::Str
            | Kind::LParen
            | Kind::LBrace
            | Kind::Ident
            | Kind::MetricIdent
            | Kind::Aggr
            | Kind::Preprocessor
            | Kind::Op(Op::Add | Op::Sub | Op::And | Op::Or | Op::Unless)
            | Kind::Keyword(Kw::By | Kw::Without | Kw::Offset)
    )
}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::And => "and",
        Op::Or => "or",
        Op::Unless => "unless",
        _ => "",
    }
}

/// Whether a matcher accepts the empty value.
fn matches_empty(op: Op, value: &str) -> bool {
    match op {
        Op::Eqlc => value.is_empty(),
        Op::Neq => !value.is_empty(),
        Op::EqlRegex | Op::NeqRegex => {
            let matched = regex::Regex::new(&format!("^(?s:{value})$"))
                .map(|re| re.is_match(""))
                .unwrap_or(false);
            matched == (op == Op::EqlRegex)
        }
        _ => false,
    }
}

/// Checks a matcher's regular expression; the error is worded as Go's `regexp` words it for
/// the common cases (unbalanced parentheses and brackets), with the anchored pattern
/// Prometheus 3 compiles (`^(?s:...)$`).
fn check_regex(pattern: &str) -> Result<(), String> {
    if regex::Regex::new(&format!("^(?s:{pattern})$")).is_ok() {
        return Ok(());
    }
    let anchored = format!("^(?s:{pattern})$");
    let mut depth = 0i64;
    let mut chars = pattern.chars().peekable();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '[' if !in_class => in_class = true,
            ']' if in_class => in_class = false,
            '(' if !in_class => depth += 1,
            ')' if !in_class => {
                depth -= 1;
                if depth < 0 {
                    return Err(format!("error parsing regexp: unexpected ): `{anchored}`"));
                }
            }
            _ => {}
        }
    }
    if depth > 0 && !in_class {
        return Err(format!(
            "error parsing regexp: missing closing ): `{anchored}`"
        ));
    }
    Err(format!(
        "error parsing regexp: invalid regular expression: `{pattern}`"
    ))
}

/// Milliseconds of a Prometheus duration (`1h30m`: units y w d h m s ms, each at most once,
/// largest first), or `None` if it is not one.
fn duration_ms(text: &str) -> Option<u128> {
    const UNITS: [(&str, u128); 7] = [
        ("y", 365 * 24 * 3_600_000),
        ("w", 7 * 24 * 3_600_000),
        ("d", 24 * 3_600_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ];
    if text == "0" {
        return Some(0);
    }
    if text.is_empty() {
        return None;
    }
    let mut rest = text;
    let mut next_unit = 0;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let value: u128 = rest.get(..digits)?.parse().ok()?;
        rest = rest.get(digits..)?;
        // "ms" wins over "m" followed by "s".
        let (index, unit) = UNITS
            .iter()
            .enumerate()
            .skip(next_unit)
            .filter(|(_, (name, _))| rest.starts_with(name))
            .max_by_key(|(_, (name, _))| name.len())?;
        total = total.checked_add(value.checked_mul(unit.1)?)?;
        rest = rest.get(unit.0.len()..)?;
        next_unit = index + 1;
    }
    Some(total)
}

/// Go's `%f` of a float.
fn go_float(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        format!("{value:.6}")
    }
}

/// Parses a number literal as Prometheus does (Go integer syntax, then float syntax).
fn parse_go_number(text: &str) -> Option<f64> {
    let lower = text.to_ascii_lowercase();
    if let Some(hex) = lower.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok().map(|v| v as f64);
    }
    if lower.len() > 1
        && lower.starts_with('0')
        && lower.bytes().all(|b| b.is_ascii_digit())
        && let Ok(octal) = i64::from_str_radix(&lower[1..], 8)
    {
        // Go reads a leading 0 as octal; when that fails it falls back to a float ("09" is 9).
        return Some(octal as f64);
    }
    match lower.as_str() {
        "inf" | "+inf" => return Some(f64::INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    lower.parse::<f64>().ok()
}

/// An upper bound of the depth of the syntax tree `query` parses to, found without recursion in
/// one pass over its tokens (after a lexer error, the tokens before it plus one level for each
/// byte after it).
///
/// Every node of the tree comes from an operator token (binary or unary) or from a pair of
/// brackets (parentheses, a call's arguments, a subquery or range, a grouping clause); leaves
/// are single tokens. So the depth below a group of brackets is at most one for the group, one
/// for each operator directly inside it, and the depth of its deepest inner group. Operators
/// inside braces are label matchers and make no nodes.
pub(crate) fn depth_bound(query: &str) -> usize {
    // After a lexer error, `promql-parser`'s lexer may still read on: each byte left can add at
    // most one level.
    let (tokens, unread) = match lex(query) {
        Ok(tokens) => (tokens, 0),
        Err((tokens, error)) => (tokens, query.len().saturating_sub(error.pos)),
    };
    // (opened by a brace, operators directly inside, deepest inner group)
    let mut groups: Vec<(bool, usize, usize)> = vec![(false, 0, 0)];
    fn close(groups: &mut Vec<(bool, usize, usize)>) {
        if groups.len() > 1
            && let Some((_, operators, inner)) = groups.pop()
            && let Some(parent) = groups.last_mut()
        {
            parent.2 = parent.2.max(1 + operators + inner);
        }
    }
    for token in &tokens {
        match token.kind {
            Kind::LParen | Kind::LBracket => groups.push((false, 0, 0)),
            Kind::LBrace => groups.push((true, 0, 0)),
            Kind::RParen | Kind::RBracket | Kind::RBrace => close(&mut groups),
            Kind::Op(_) => {
                if let Some(group) = groups.last_mut()
                    && !group.0
                {
                    group.1 += 1;
                }
            }
            _ => {}
        }
    }
    while groups.len() > 1 {
        close(&mut groups);
    }
    groups
        .first()
        .map_or(1, |(_, operators, inner)| 1 + operators + inner)
        .saturating_add(unread)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(query: &str) -> String {
        check(query).map(|e| e.render(query)).unwrap_or_default()
    }

    #[test]
    fn positions_count_lines_and_bytes() {
        assert_eq!(position("abc", 0), "1:1");
        assert_eq!(position("abc", 3), "1:4");
        assert_eq!(position("a\nbc", 3), "2:2");
    }

    #[test]
    fn lexer_errors_are_worded_as_prometheus_words_them() {
        assert_eq!(
            message("sum("),
            "1:5: parse error: unclosed left parenthesis"
        );
        assert_eq!(
            message("foo)"),
            "1:5: parse error: unexpected right parenthesis ')'"
        );
        assert_eq!(
            message("foo[5]"),
            "1:5: parse error: missing unit character in duration"
        );
        assert_eq!(
            message(r#"foo{bar="\z"}"#),
            "1:9: parse error: unknown escape sequence U+007A 'z'"
        );
    }

    #[test]
    fn grammar_and_type_errors_carry_context_and_position() {
        assert_eq!(
            message("foo bar"),
            "1:5: parse error: unexpected identifier \"bar\""
        );
        assert_eq!(
            message("sum without() by (job) (foo)"),
            "1:15: parse error: unexpected <by> in aggregation"
        );
        assert_eq!(
            message("rate(foo)"),
            "1:6: parse error: expected type range vector in call to function \"rate\", got instant vector"
        );
        assert_eq!(message("rate(foo[5m])"), "");
    }

    #[test]
    fn every_prefix_and_suffix_is_checked_without_panicking() {
        let queries = [
            r#"sum by (job, "ä") (rate(x{a=~"ü(", b!="\u00ff\x41\101"}[5m:1m] offset -1h @ start()))"#,
            "label_join(`é`, 'a\\'', \"z\", \"€\") # comment ✓\n + 0x1F ^ -1e3 atan2 .5 and on(x) group_left y",
            "topk(1, {__name__=\"é\"}) > bool 2 unless ignoring(a) quantile(0.5, b)",
        ];
        for query in queries {
            for (index, _) in query.char_indices() {
                let _ = check(&query[..index]);
                let _ = check(&query[index..]);
                let _ = invalid_utf8_strings(&query[..index]);
            }
        }
        assert_eq!(check(queries[2]), None);
    }

    #[test]
    fn durations_follow_prometheus_syntax() {
        assert_eq!(duration_ms("1h30m"), Some(5_400_000));
        assert_eq!(duration_ms("1ms"), Some(1));
        assert_eq!(duration_ms("1m1s"), Some(61_000));
        assert_eq!(duration_ms("1m1h"), None);
        assert_eq!(duration_ms("m"), None);
        assert_eq!(duration_ms("0s"), Some(0));
        assert_eq!(
            message("foo[1m1h]"),
            "1:5: parse error: not a valid duration string: \"1m1h\""
        );
    }

    #[test]
    fn unquote_reads_bytes_like_go() {
        assert_eq!(unquote(r#""\xff""#), Ok(vec![0xff]));
        assert_eq!(unquote(r#""a\u00ffb""#), Ok("aÿb".as_bytes().to_vec()));
        assert_eq!(unquote(r#""\101""#), Ok(b"A".to_vec()));
        assert_eq!(unquote("`a\\xff`"), Ok(b"a\\xff".to_vec()));
        assert_eq!(
            invalid_utf8_strings(r#"label_replace(x{a="\xff"}, "\xff", "", "b", "")"#),
            (4, vec![(0, vec![0xff])])
        );
    }

    #[test]
    fn raw_strings_are_requoted_without_escapes() {
        assert_eq!(requote_raw_strings("foo{a=`b`}"), None);
        assert_eq!(
            requote_raw_strings("x{a=~`\\.`} + f(`(\\d+)`, \"\\\\\")").as_deref(),
            Some("x{a=~\"\\\\.\"} + f(\"(\\\\d+)\", \"\\\\\")")
        );
        assert_eq!(
            requote_raw_strings("f(`a\r\nb\\`)").as_deref(),
            Some("f(\"a\\nb\\\\\")")
        );
    }
}
