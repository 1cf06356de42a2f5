//! The SCIM attribute path grammar of RFC 7644 §3.10 and §3.5.2, as far as a PatchOp
//! `path` uses it: `[URN ":"] attr ["." sub]` or `attr "[" attr op value "]" ["." sub]`,
//! a filter being one comparison. A small total parser: every input ends in a
//! [`Path`] or a [`PathError`], never a panic, and nothing here reads a regex.
//!
//! Attribute names and operators compare case-insensitively (RFC 7643 §2.1), so the
//! names are kept in lower case. A filter's value keeps its case: whether it compares
//! case-insensitively depends on the attribute (`type` is not case-exact).

use super::USER_SCHEMA;

/// The schema a path belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schema {
    /// The core User schema, named or not.
    Core,
    /// The core User schema's URN alone: the whole resource.
    CoreResource,
    /// Any other schema (the enterprise extension and vendors' own).
    Extension,
}

/// A literal a filter compares with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Literal {
    Str(String),
    Bool(bool),
    Null,
    /// A number, as written.
    Number(String),
}

/// `attr op value` inside brackets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// In lower case.
    pub attr: String,
    /// In lower case: `eq`, `ne`, `co`, `sw`, `ew`, `gt`, `lt`, `ge`, `le`.
    pub op: String,
    pub value: Literal,
}

/// A parsed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    pub schema: Schema,
    /// The attribute, in lower case; empty for [`Schema::CoreResource`] and
    /// [`Schema::Extension`] (whose attributes are never read).
    pub attr: String,
    pub filter: Option<Filter>,
    /// The sub-attribute, in lower case.
    pub sub: Option<String>,
}

/// An attribute as a message may name it: the identity attributes this function reads,
/// in RFC 7643's spelling. Any other name is the document's text and is not repeated.
pub fn attribute_name(attr: &str) -> &'static str {
    match attr {
        "name" => "name",
        "emails" => "emails",
        "phonenumbers" => "phoneNumbers",
        _ => "(another attribute)",
    }
}

/// A filter's attribute as a message may name it.
fn filter_attribute_name(attr: &str) -> &'static str {
    match attr {
        "type" => "type",
        "primary" => "primary",
        "value" => "value",
        _ => "(another attribute)",
    }
}

/// A sub-attribute as a message may name it.
fn sub_attribute_name(sub: &str) -> &'static str {
    match sub {
        "value" => "value",
        "givenname" => "givenName",
        "familyname" => "familyName",
        _ => "(another sub-attribute)",
    }
}

impl Path {
    /// The path as it can be repeated in a message (SPEC §3.1): the names this function
    /// reads, in RFC 7643's spelling, and the filter's operator (one of the grammar's);
    /// any other name, and a filter's value (it may be an address), is left out.
    pub fn shown(&self) -> String {
        let mut out = match self.schema {
            Schema::Core => attribute_name(&self.attr).to_owned(),
            Schema::CoreResource => return "(core User schema)".into(),
            Schema::Extension => return "(extension attribute)".into(),
        };
        if let Some(f) = &self.filter {
            let op = OPERATORS
                .iter()
                .find(|op| **op == f.op)
                .unwrap_or(&"(operator)");
            out.push_str(&format!("[{} {op} …]", filter_attribute_name(&f.attr)));
        }
        if let Some(sub) = &self.sub {
            out.push('.');
            out.push_str(sub_attribute_name(sub));
        }
        out
    }
}

/// Why a path could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathError {
    /// The attribute named at the start of the path, in lower case, when it could
    /// be read: the caller decides whether the rest matters.
    pub attr: Option<String>,
    pub reason: &'static str,
}

const OPERATORS: [&str; 9] = ["eq", "ne", "co", "sw", "ew", "gt", "lt", "ge", "le"];

/// Parses a PatchOp `path`.
///
/// # Errors
/// A [`PathError`] when the text is not a path of the grammar above.
pub fn parse(path: &str) -> Result<Path, PathError> {
    let path = path.trim();
    if let Some(rest) = strip_prefix_ci(path, USER_SCHEMA) {
        if rest.is_empty() {
            return Ok(Path {
                schema: Schema::CoreResource,
                attr: String::new(),
                filter: None,
                sub: None,
            });
        }
        if let Some(rest) = rest.strip_prefix(':') {
            return parse_core(rest);
        }
    }
    if strip_prefix_ci(path, "urn:").is_some() {
        return Ok(Path {
            schema: Schema::Extension,
            attr: String::new(),
            filter: None,
            sub: None,
        });
    }
    parse_core(path)
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// A cursor over the path's characters.
struct Cursor<'a> {
    rest: &'a str,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<char> {
        self.rest.chars().next()
    }

    fn eat(&mut self, c: char) -> bool {
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn spaces(&mut self) -> usize {
        let trimmed = self.rest.trim_start_matches(' ');
        let n = self.rest.len() - trimmed.len();
        self.rest = trimmed;
        n
    }

    /// `ATTRNAME = ALPHA *("-" / "_" / DIGIT / ALPHA)`, in lower case.
    fn name(&mut self) -> Option<String> {
        if !self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
            return None;
        }
        let end = self
            .rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .unwrap_or(self.rest.len());
        let (name, rest) = self.rest.split_at(end);
        self.rest = rest;
        Some(name.to_ascii_lowercase())
    }

    /// A word of letters (an operator or `true`/`false`/`null`), in lower case.
    fn word(&mut self) -> String {
        let end = self
            .rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(self.rest.len());
        let (word, rest) = self.rest.split_at(end);
        self.rest = rest;
        word.to_ascii_lowercase()
    }

    /// A JSON string literal, decoded.
    fn string(&mut self) -> Option<String> {
        if !self.rest.starts_with('"') {
            return None;
        }
        let mut escaped = false;
        let mut end = None;
        for (i, c) in self.rest.char_indices().skip(1) {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let end = end?;
        let literal = serde_json::from_str::<String>(&self.rest[..=end]).ok()?;
        self.rest = &self.rest[end + 1..];
        Some(literal)
    }

    /// A JSON number, as written.
    fn number(&mut self) -> Option<String> {
        let end = self
            .rest
            .find(|c: char| !(c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E')))
            .unwrap_or(self.rest.len());
        let (text, rest) = self.rest.split_at(end);
        serde_json::from_str::<serde_json::Number>(text).ok()?;
        self.rest = rest;
        Some(text.to_owned())
    }
}

fn parse_core(path: &str) -> Result<Path, PathError> {
    let mut c = Cursor { rest: path };
    let Some(attr) = c.name() else {
        return Err(PathError {
            attr: None,
            reason: "does not start with an attribute name",
        });
    };
    let fail = |reason| PathError {
        attr: Some(attr.clone()),
        reason,
    };
    let filter = if c.eat('[') {
        let filter = parse_filter(&mut c).map_err(fail)?;
        if !c.eat(']') {
            return Err(fail("has a filter that is not one comparison closed by ]"));
        }
        Some(filter)
    } else {
        None
    };
    let sub = if c.eat('.') {
        Some(
            c.name()
                .ok_or_else(|| fail("has no sub-attribute name after ."))?,
        )
    } else {
        None
    };
    if !c.rest.is_empty() {
        return Err(fail("has text after the attribute"));
    }
    Ok(Path {
        schema: Schema::Core,
        attr,
        filter,
        sub,
    })
}

/// Parses a whole filter expression of one comparison, such as a `filter` query
/// parameter (`userName eq "jdoe"`); an attribute named with the core User schema's URN
/// (`urn:…:User:userName`) is read as the attribute.
///
/// # Errors
/// Why the text is not one comparison.
pub fn parse_comparison(text: &str) -> Result<Filter, &'static str> {
    let text = text.trim();
    let text = strip_prefix_ci(text, USER_SCHEMA)
        .and_then(|rest| rest.strip_prefix(':'))
        .unwrap_or(text);
    let mut c = Cursor { rest: text };
    let filter = parse_filter(&mut c)?;
    if c.rest.is_empty() {
        Ok(filter)
    } else {
        Err("has text after one comparison")
    }
}

fn parse_filter(c: &mut Cursor<'_>) -> Result<Filter, &'static str> {
    c.spaces();
    let attr = c.name().ok_or("has a filter without an attribute name")?;
    if c.spaces() == 0 {
        return Err("has a filter without a space after its attribute");
    }
    let op = c.word();
    if !OPERATORS.contains(&op.as_str()) {
        return Err("has a filter without a comparison operator");
    }
    if c.spaces() == 0 {
        return Err("has a filter without a space after its operator");
    }
    let value = match c.peek() {
        Some('"') => Literal::Str(c.string().ok_or("has a filter with an unreadable string")?),
        Some(ch) if ch.is_ascii_digit() || ch == '-' => {
            Literal::Number(c.number().ok_or("has a filter with an unreadable number")?)
        }
        _ => match c.word().as_str() {
            "true" => Literal::Bool(true),
            "false" => Literal::Bool(false),
            "null" => Literal::Null,
            _ => return Err("has a filter whose value is not a literal"),
        },
    };
    c.spaces();
    Ok(Filter { attr, op, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core(attr: &str, filter: Option<Filter>, sub: Option<&str>) -> Path {
        Path {
            schema: Schema::Core,
            attr: attr.into(),
            filter,
            sub: sub.map(Into::into),
        }
    }

    fn eq(attr: &str, value: Literal) -> Option<Filter> {
        Some(Filter {
            attr: attr.into(),
            op: "eq".into(),
            value,
        })
    }

    #[test]
    fn a_plain_and_a_dotted_attribute_are_read_in_lower_case() {
        assert_eq!(parse("active"), Ok(core("active", None, None)));
        assert_eq!(
            parse("name.givenName"),
            Ok(core("name", None, Some("givenname")))
        );
        assert_eq!(
            parse(" NAME.FamilyName "),
            Ok(core("name", None, Some("familyname")))
        );
    }

    #[test]
    fn entra_filters_on_type_and_primary_are_read() {
        assert_eq!(
            parse(r#"emails[type eq "work"].value"#),
            Ok(core(
                "emails",
                eq("type", Literal::Str("work".into())),
                Some("value")
            ))
        );
        assert_eq!(
            parse("emails[primary eq true].value"),
            Ok(core(
                "emails",
                eq("primary", Literal::Bool(true)),
                Some("value")
            ))
        );
        assert_eq!(
            parse(r#"phoneNumbers[Type EQ "Mobile"].Value"#),
            Ok(core(
                "phonenumbers",
                eq("type", Literal::Str("Mobile".into())),
                Some("value")
            ))
        );
        assert_eq!(
            parse(r#"emails[ type eq "wo\"rk" ]"#),
            Ok(core(
                "emails",
                eq("type", Literal::Str("wo\"rk".into())),
                None
            ))
        );
        assert_eq!(
            parse("emails[primary eq False]"),
            Ok(core("emails", eq("primary", Literal::Bool(false)), None))
        );
    }

    #[test]
    fn a_core_schema_prefix_is_stripped_and_extensions_are_recognised() {
        assert_eq!(
            parse("urn:ietf:params:scim:schemas:core:2.0:User:name.givenName"),
            Ok(core("name", None, Some("givenname")))
        );
        assert_eq!(
            parse("urn:ietf:params:scim:schemas:core:2.0:user").map(|p| p.schema),
            Ok(Schema::CoreResource)
        );
        for extension in [
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
            "urn:ietf:params:scim:schemas:core:2.0:UserX",
        ] {
            assert_eq!(parse(extension).map(|p| p.schema), Ok(Schema::Extension));
        }
    }

    #[test]
    fn unreadable_paths_name_the_attribute_when_they_can() {
        for (path, attr) in [
            ("", None),
            ("9lives", None),
            (".value", None),
            ("emails[", Some("emails")),
            (r#"emails[type eq "work"#, Some("emails")),
            (
                r#"emails[type eq "work" and primary eq true].value"#,
                Some("emails"),
            ),
            ("emails[type pr]", Some("emails")),
            ("emails[type eq work]", Some("emails")),
            ("emails[typeeq\"work\"]", Some("emails")),
            ("name.", Some("name")),
            ("name.givenName.x", Some("name")),
            ("name givenName", Some("name")),
            ("emails[value eq 1e]", Some("emails")),
        ] {
            let err = parse(path).unwrap_err();
            assert_eq!(err.attr.as_deref(), attr, "{path}");
        }
    }

    #[test]
    fn the_shown_path_leaves_the_filter_value_out() {
        let p = parse(r#"emails[value eq "jane@example.com"].value"#).unwrap();
        assert_eq!(p.shown(), "emails[value eq …].value");
    }

    #[test]
    fn a_filter_parameter_of_one_comparison_is_read_and_anything_more_is_refused() {
        for text in [
            "userName eq \"jdoe\"",
            " USERNAME Eq \"jdoe\" ",
            "urn:ietf:params:scim:schemas:core:2.0:User:userName eq \"jdoe\"",
        ] {
            let f = parse_comparison(text).unwrap();
            assert_eq!(
                (f.attr.as_str(), f.op.as_str(), f.value),
                ("username", "eq", Literal::Str("jdoe".into())),
                "{text}"
            );
        }
        for text in [
            "userName eq \"a\" or userName eq \"b\"",
            "userName eq",
            "userName",
            "(userName eq \"a\")",
            "",
        ] {
            assert!(parse_comparison(text).is_err(), "{text}");
        }
    }
}
