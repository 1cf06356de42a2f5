//! The identity provider's users, read from an export: a CSV file with a header row
//! (columns mapped to fields by name, with presets for Okta and Entra ID), JSON Lines of
//! canonical documents, or a SCIM `ListResponse`. The documents are read by the
//! function's own readers (`inbound::read_document`), so a JSON line or a SCIM resource
//! means here what it means to the function. Values are kept as received: the
//! comparison normalises them as the function does.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use connect_identity_sync::domain::document::{RawField, RawIdentity, RawUser};
use connect_identity_sync::domain::identity::{Field, InstanceId, UserRef};
use connect_identity_sync::inbound::{Carrier, read_document};
use serde_json::Value;

/// The kinds of file read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A CSV export with a header row.
    Csv,
    /// One canonical change document (or SCIM User resource) per line.
    Jsonl,
    /// A SCIM 2.0 `ListResponse` of User resources.
    Scim,
}

impl Format {
    /// The format a file's extension suggests: `.jsonl`/`.ndjson` JSON Lines, `.json`
    /// SCIM, anything else CSV.
    pub fn of(path: &Path) -> Format {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("jsonl" | "ndjson") => Format::Jsonl,
            Some("json") => Format::Scim,
            _ => Format::Csv,
        }
    }
}

/// Column names of the usual exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// Okta's user profile attributes, as its CSV import template and user exports name
    /// them: `login`, `firstName`, `lastName`, `email`, `secondEmail`, `mobilePhone`.
    Okta,
    /// Microsoft Entra ID's "Download users" CSV: `userPrincipalName`, `givenName`,
    /// `surname`, `mail`, `mobile` (or `mobilePhone`, "Mobile phone"). SecondaryEmail is
    /// not mapped: map it with `--columns` if the directory holds one.
    Entra,
}

/// What a CSV column can hold: the user's key or one identity field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    Username,
    UserId,
    Field(Field),
}

impl Target {
    const ALL: [Target; 7] = [
        Target::Username,
        Target::UserId,
        Target::Field(Field::FirstName),
        Target::Field(Field::LastName),
        Target::Field(Field::Email),
        Target::Field(Field::SecondaryEmail),
        Target::Field(Field::Mobile),
    ];

    fn name(self) -> &'static str {
        match self {
            Target::Username => "Username",
            Target::UserId => "UserId",
            Target::Field(f) => f.as_str(),
        }
    }

    fn parse(name: &str) -> Option<Target> {
        Target::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(name.trim()))
    }
}

/// The column names looked for, per target, in order of preference. A header matches
/// a name exactly, else ignoring letter case, spaces and punctuation (`Mobile phone`
/// is `mobilePhone`).
fn candidates(preset: Option<Preset>, target: Target) -> &'static [&'static str] {
    match (preset, target) {
        (None, Target::Username) => &["Username", "userName"],
        (None, Target::UserId) => &["UserId"],
        (None, Target::Field(f)) => match f {
            Field::FirstName => &["FirstName"],
            Field::LastName => &["LastName"],
            Field::Email => &["Email"],
            Field::SecondaryEmail => &["SecondaryEmail"],
            Field::Mobile => &["Mobile"],
        },
        (Some(Preset::Okta), Target::Username) => &["login", "Username"],
        (Some(Preset::Okta), Target::Field(f)) => match f {
            Field::FirstName => &["firstName"],
            Field::LastName => &["lastName"],
            Field::Email => &["email", "Primary email"],
            Field::SecondaryEmail => &["secondEmail", "Secondary email"],
            Field::Mobile => &["mobilePhone"],
        },
        (Some(Preset::Entra), Target::Username) => &["userPrincipalName"],
        (Some(Preset::Entra), Target::Field(f)) => match f {
            Field::FirstName => &["givenName", "First name"],
            Field::LastName => &["surname", "Last name"],
            Field::Email => &["mail"],
            Field::SecondaryEmail => &[],
            Field::Mobile => &["mobile", "mobilePhone"],
        },
        (Some(_), Target::UserId) => &[],
    }
}

/// One `--columns` option: a column per target, `None` leaving the target unmapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns(pub Vec<(Target, Option<String>)>);

/// `--columns FIELD=COLUMN,...`: a column per target, over the preset's; an empty
/// column leaves the target unmapped.
///
/// # Errors
/// A message naming the part that is not `FIELD=COLUMN` with a known field.
pub fn parse_columns(raw: &str) -> Result<Columns, String> {
    raw.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|part| {
            let (field, column) = part
                .split_once('=')
                .ok_or_else(|| format!("'{part}' is not FIELD=COLUMN"))?;
            let target = Target::parse(field).ok_or_else(|| {
                let names: Vec<&str> = Target::ALL.iter().map(|t| t.name()).collect();
                format!("'{field}' is not one of {}", names.join(", "))
            })?;
            let column = column.trim();
            Ok((target, (!column.is_empty()).then(|| column.to_owned())))
        })
        .collect::<Result<_, _>>()
        .map(Columns)
}

/// Where a user was read in the file: a line (CSV, JSON Lines) or a resource's
/// position in a `ListResponse`, counted from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Line(u64),
    Resource(u64),
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Line(n) => write!(f, "line {n}"),
            Place::Resource(n) => write!(f, "resource {n}"),
        }
    }
}

/// How the file names a user.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    Username(String),
    UserId(String),
    /// A row that names its user twice (a `UserId` and a `Username`): both must name the
    /// same Connect user, or the row is not compared (a row of one person's values under
    /// another's id would otherwise be written onto that other agent).
    Both {
        user_id: String,
        username: String,
    },
}

/// One user of the file, or a row that names none usable.
#[derive(Debug, Clone)]
pub struct FileUser {
    pub place: Place,
    /// The user, or why the row names none (a message without values).
    pub key: Result<Key, String>,
    pub identity: RawIdentity,
}

/// The users of a file and what the operator should know about how it was read.
#[derive(Debug, Default)]
pub struct Export {
    pub users: Vec<FileUser>,
    /// The fields the file carries no column for (CSV): never compared.
    pub unmapped: Vec<Field>,
}

/// How to read a file.
#[derive(Debug, Clone)]
pub struct Reading {
    pub format: Format,
    pub preset: Option<Preset>,
    pub columns: Vec<(Target, Option<String>)>,
    pub instance: InstanceId,
}

/// Reads the users of `path`.
///
/// # Errors
/// A message (no value of the file) when the file cannot be read as a whole: missing,
/// not UTF-8, no header, no column for the user, not a `ListResponse`.
pub fn read(path: &Path, how: &Reading) -> Result<Export, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        format!(
            "{} is not UTF-8 (at byte {})",
            path.display(),
            e.valid_up_to()
        )
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match how.format {
        Format::Csv => read_csv(text, how),
        Format::Jsonl => Ok(Export {
            users: read_jsonl(text, &how.instance),
            unmapped: Vec::new(),
        }),
        Format::Scim => read_scim(text, &how.instance).map(|users| Export {
            users,
            unmapped: Vec::new(),
        }),
    }
}

/// A header name without case, spaces or punctuation.
fn folded(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn find_column(headers: &[String], name: &str) -> Option<usize> {
    headers.iter().position(|h| h.trim() == name).or_else(|| {
        let want = folded(name);
        headers.iter().position(|h| folded(h) == want)
    })
}

/// The column of each target: `--columns` first, else the preset's names.
fn map_columns(headers: &[String], how: &Reading) -> Result<BTreeMap<Target, usize>, String> {
    let mut map = BTreeMap::new();
    for target in Target::ALL {
        let explicit = how.columns.iter().rev().find(|(t, _)| *t == target);
        let index = match explicit {
            Some((_, None)) => None,
            Some((_, Some(column))) => Some(find_column(headers, column).ok_or_else(|| {
                format!(
                    "--columns maps {} to a column the header row does not have",
                    target.name()
                )
            })?),
            None => candidates(how.preset, target)
                .iter()
                .find_map(|name| find_column(headers, name)),
        };
        if let Some(i) = index {
            map.insert(target, i);
        }
    }
    if !map.contains_key(&Target::Username) && !map.contains_key(&Target::UserId) {
        return Err(
            "the header row has no column for the user (Username or UserId): choose a --preset or map one with --columns"
                .into(),
        );
    }
    Ok(map)
}

fn read_csv(text: &str, how: &Reading) -> Result<Export, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut records = reader.records();
    let next = |records: &mut csv::StringRecordsIter<'_, &[u8]>| {
        records
            .next()
            .transpose()
            .map_err(|e| format!("the file is not CSV: {}", csv_error(&e)))
    };
    let mut header = next(&mut records)?.ok_or("the file is empty: no header row")?;
    // Entra ID's bulk templates open with a `version:v1.0` line above the header.
    if header.len() <= 2 && header.get(0).is_some_and(|c| c.starts_with("version:")) {
        header = next(&mut records)?.ok_or("the file has no header row")?;
    }
    let headers: Vec<String> = header.iter().map(str::to_owned).collect();
    let columns = map_columns(&headers, how)?;
    let unmapped = Field::ALL
        .into_iter()
        .filter(|f| !columns.contains_key(&Target::Field(*f)))
        .collect();
    let mut users = Vec::new();
    let mut lines = Lines::new(text);
    for record in records {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| lines.at(p));
                users.push(FileUser {
                    place: Place::Line(line),
                    key: Err(format!("not a CSV record: {}", csv_error(&e))),
                    identity: RawIdentity::default(),
                });
                continue;
            }
        };
        let line = record.position().map_or(0, |p| lines.at(p));
        if record.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        let place = Place::Line(line);
        if record.len() != headers.len() {
            users.push(FileUser {
                place,
                key: Err(format!(
                    "has {} cells where the header row has {}",
                    record.len(),
                    headers.len()
                )),
                identity: RawIdentity::default(),
            });
            continue;
        }
        let cell = |t: Target| columns.get(&t).and_then(|i| record.get(*i)).map(str::trim);
        let name = cell(Target::Username).filter(|n| !n.is_empty());
        let key = match (cell(Target::UserId), name) {
            (Some(id), name) if !id.is_empty() => {
                user_id_key(id, &how.instance).map(|key| key.and_username(name))
            }
            (_, Some(name)) => Ok(Key::Username(name.to_owned())),
            _ => Err("names no user (its Username and UserId cells are empty)".into()),
        };
        let mut identity = RawIdentity::default();
        for field in Field::ALL {
            if let Some(value) = cell(Target::Field(field)) {
                // An empty cell is a field the identity provider holds no value for.
                identity.set(field, RawField::Set(value.to_owned()));
            }
        }
        users.push(FileUser {
            place,
            key,
            identity,
        });
    }
    Ok(Export { users, unmapped })
}

/// The line a record starts on, counted from 1. The reader's own count leaves blank
/// lines out, and its byte position is where the blank lines before the record start.
/// Records come in order, so each count goes on from the last one.
struct Lines<'a> {
    bytes: &'a [u8],
    at: usize,
    line: u64,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        Lines {
            bytes: text.as_bytes(),
            at: 0,
            line: 1,
        }
    }

    fn at(&mut self, position: &csv::Position) -> u64 {
        let mut start = usize::try_from(position.byte())
            .unwrap_or(usize::MAX)
            .min(self.bytes.len());
        while self
            .bytes
            .get(start)
            .is_some_and(|b| matches!(b, b'\n' | b'\r'))
        {
            start += 1;
        }
        if start < self.at {
            // Not in order (never, from one reader): count again from the start.
            (self.at, self.line) = (0, 1);
        }
        self.line += self.bytes[self.at..start]
            .iter()
            .filter(|b| **b == b'\n')
            .count() as u64;
        self.at = start;
        self.line
    }
}

/// A CSV error without the record's content.
fn csv_error(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "a cell that is not UTF-8".into(),
        csv::ErrorKind::UnequalLengths { .. } => "a row of another length".into(),
        csv::ErrorKind::Io(e) => e.to_string(),
        _ => "unreadable".into(),
    }
}

impl Key {
    /// The key of a row that names its user by id, and perhaps also by `username`.
    fn and_username(self, username: Option<&str>) -> Key {
        match (self, username) {
            (Key::UserId(user_id), Some(name)) => Key::Both {
                user_id,
                username: name.to_owned(),
            },
            (key, _) => key,
        }
    }
}

/// A user id or a user ARN of the instance compared.
fn user_id_key(raw: &str, instance: &InstanceId) -> Result<Key, String> {
    match UserRef::parse_user_id(raw) {
        Ok(UserRef::Id(id)) => Ok(Key::UserId(id.to_string())),
        Ok(UserRef::Arn { instance: of, user }) if of == *instance => {
            Ok(Key::UserId(user.to_string()))
        }
        Ok(UserRef::Arn { .. }) => Err("its user ARN belongs to another instance".into()),
        Ok(UserRef::Username(_)) | Err(_) => Err("its UserId is not a Connect user id".into()),
    }
}

/// A document read by the function's reader, as one user of the file.
fn from_document(place: Place, value: &Value, instance: &InstanceId) -> FileUser {
    let refused = |why: String| FileUser {
        place,
        key: Err(why),
        identity: RawIdentity::default(),
    };
    if value
        .get("schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| {
            s.iter()
                .filter_map(Value::as_str)
                .any(|s| s.ends_with(":PatchOp"))
        })
    {
        return refused("a SCIM PatchOp is a change, not a user's state".into());
    }
    let doc = match read_document(value, Carrier::default()) {
        Ok(doc) => doc,
        Err(f) => return refused(f.message),
    };
    if let Some(named) = &doc.instance {
        match InstanceId::parse(named) {
            Ok(i) if i == *instance => {}
            _ => return refused("its InstanceId is not the instance compared".into()),
        }
    }
    // The function reads a document's UserId and ignores a Username beside it; the file
    // states a user's values, so a Username beside the id must name the same user.
    let beside = value
        .get("Username")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|n| !n.is_empty());
    let key = match &doc.user {
        RawUser::UserId(raw) => user_id_key(raw, instance).map(|key| key.and_username(beside)),
        RawUser::Username(name) => Ok(Key::Username(name.trim().to_owned())),
    };
    FileUser {
        place,
        key,
        identity: doc.identity,
    }
}

fn read_jsonl(text: &str, instance: &InstanceId) -> Vec<FileUser> {
    let mut users = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let place = Place::Line(n as u64 + 1);
        match serde_json::from_str::<Value>(line) {
            Ok(value) => users.push(from_document(place, &value, instance)),
            Err(_) => users.push(FileUser {
                place,
                key: Err("not a JSON document".into()),
                identity: RawIdentity::default(),
            }),
        }
    }
    users
}

const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

fn read_scim(text: &str, instance: &InstanceId) -> Result<Vec<FileUser>, String> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| format!("the file is not JSON (line {})", e.line()))?;
    let Value::Object(map) = value else {
        return Err("the file is not a SCIM ListResponse (not a JSON object)".into());
    };
    let get = |key: &str| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    };
    let is_list = get("schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|v| v.as_str() == Some(LIST_RESPONSE)));
    let resources = match get("Resources") {
        Some(Value::Array(r)) => r.as_slice(),
        None if is_list => &[],
        _ => return Err("the file is not a SCIM ListResponse (no Resources array)".into()),
    };
    Ok(resources
        .iter()
        .enumerate()
        .map(|(n, resource)| {
            // In a ListResponse of Users a resource may leave its schema out.
            let mut resource = resource.clone();
            if let Value::Object(r) = &mut resource
                && !r.keys().any(|k| k.eq_ignore_ascii_case("schemas"))
            {
                r.insert("schemas".into(), serde_json::json!([USER_SCHEMA]));
            }
            from_document(Place::Resource(n as u64 + 1), &resource, instance)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INSTANCE: &str = "11111111-2222-3333-4444-555555555555";

    fn reading(format: Format, preset: Option<Preset>, columns: &str) -> Reading {
        Reading {
            format,
            preset,
            columns: parse_columns(columns).unwrap().0,
            instance: InstanceId::parse(INSTANCE).unwrap(),
        }
    }

    fn csv(text: &str, how: &Reading) -> Result<Export, String> {
        read_csv(text, how)
    }

    #[test]
    fn an_okta_export_is_read_with_its_attribute_names() {
        let text = "login,firstName,lastName,email,secondEmail,mobilePhone,title\n\
                    jdoe@example.com, Jane ,Doe,jane@example.com,,(415) 555-0123,Agent\n";
        let export = csv(text, &reading(Format::Csv, Some(Preset::Okta), "")).unwrap();
        assert!(export.unmapped.is_empty());
        let user = &export.users[0];
        assert_eq!(user.place, Place::Line(2));
        assert_eq!(user.key, Ok(Key::Username("jdoe@example.com".into())));
        assert_eq!(user.identity.first_name, RawField::Set("Jane".into()));
        assert_eq!(user.identity.secondary_email, RawField::Set(String::new()));
        assert_eq!(user.identity.mobile, RawField::Set("(415) 555-0123".into()));
    }

    #[test]
    fn an_entra_download_is_read_whatever_its_headers_spelling() {
        let text = "\u{feff}version:v1.0\nUser principal name,First name,Surname,Mail,Mobile phone\n\
                    jdoe@contoso.com,Jane,Doe,jane@contoso.com,+1 415 555 0123\n";
        let text = text.strip_prefix('\u{feff}').unwrap();
        let export = csv(text, &reading(Format::Csv, Some(Preset::Entra), "")).unwrap();
        assert_eq!(export.unmapped, vec![Field::SecondaryEmail]);
        let user = &export.users[0];
        assert_eq!(user.key, Ok(Key::Username("jdoe@contoso.com".into())));
        assert_eq!(user.identity.last_name, RawField::Set("Doe".into()));
        assert_eq!(
            user.identity.mobile,
            RawField::Set("+1 415 555 0123".into())
        );
    }

    #[test]
    fn columns_override_the_preset_and_an_empty_column_unmaps_a_field() {
        let text = "userPrincipalName,givenName,surname,mail,mobile,otherMail\n\
                    a@contoso.com,A,B,a@contoso.com,,b@home.example\n";
        let how = reading(
            Format::Csv,
            Some(Preset::Entra),
            "SecondaryEmail=otherMail,Mobile=",
        );
        let export = csv(text, &how).unwrap();
        assert_eq!(export.unmapped, vec![Field::Mobile]);
        assert_eq!(
            export.users[0].identity.secondary_email,
            RawField::Set("b@home.example".into())
        );
        assert_eq!(export.users[0].identity.mobile, RawField::Keep);
    }

    #[test]
    fn a_file_without_a_user_column_is_refused_and_a_bad_mapping_named() {
        let how = reading(Format::Csv, None, "");
        assert!(csv("FirstName,LastName\nA,B\n", &how).is_err());
        let how = reading(Format::Csv, None, "Username=login");
        let err = csv("Username,FirstName\na,A\n", &how).unwrap_err();
        assert!(err.contains("Username"), "{err}");
        assert!(parse_columns("Phone=mobile").is_err());
        assert!(parse_columns("Mobile").is_err());
    }

    #[test]
    fn a_row_of_another_length_or_without_a_user_is_reported_by_its_line() {
        let text = "Username,FirstName\na,A\nb\n,C\n\nd,\"D\"\n";
        let export = csv(text, &reading(Format::Csv, None, "")).unwrap();
        let places: Vec<_> = export
            .users
            .iter()
            .map(|u| (u.place, u.key.is_ok()))
            .collect();
        assert_eq!(
            places,
            [
                (Place::Line(2), true),
                (Place::Line(3), false),
                (Place::Line(4), false),
                (Place::Line(6), true)
            ]
        );
    }

    #[test]
    fn a_user_id_column_wins_and_an_arn_of_another_instance_is_refused() {
        let text = format!(
            "UserId,Username,FirstName\nu-1,a,A\n,b,B\narn:aws:connect:us-east-1:1:instance/{INSTANCE}/agent/u-3,,C\n\
             arn:aws:connect:us-east-1:1:instance/99999999-2222-3333-4444-555555555555/agent/u-4,,D\n"
        );
        let export = csv(&text, &reading(Format::Csv, None, "")).unwrap();
        let keys: Vec<_> = export.users.iter().map(|u| u.key.clone()).collect();
        assert_eq!(
            keys[0],
            Ok(Key::Both {
                user_id: "u-1".into(),
                username: "a".into()
            })
        );
        assert_eq!(keys[1], Ok(Key::Username("b".into())));
        assert_eq!(keys[2], Ok(Key::UserId("u-3".into())));
        assert!(keys[3].is_err());
    }

    #[test]
    fn json_lines_are_canonical_documents_and_a_patch_is_refused() {
        let text = format!(
            "{}\n\n{}\nnot json\n{}\n{}\n",
            serde_json::json!({"Username": "a", "IdentityInfo": {"Mobile": "415 555 0123", "SecondaryEmail": null}}),
            serde_json::json!({"UserId": "u-2", "InstanceId": INSTANCE, "IdentityInfo": {"FirstName": "B"}}),
            serde_json::json!({"UserId": "u-3", "InstanceId": "99999999-2222-3333-4444-555555555555", "IdentityInfo": {}}),
            serde_json::json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "UserId": "u-4", "Operations": []}),
        );
        let users = read_jsonl(&text, &InstanceId::parse(INSTANCE).unwrap());
        assert_eq!(users.len(), 5);
        assert_eq!(users[0].key, Ok(Key::Username("a".into())));
        assert_eq!(users[0].identity.secondary_email, RawField::Clear);
        assert_eq!(users[0].identity.first_name, RawField::Keep);
        assert_eq!(users[1].place, Place::Line(3));
        assert_eq!(users[1].key, Ok(Key::UserId("u-2".into())));
        assert!(users[2].key.is_err());
        assert!(users[3].key.is_err(), "another instance");
        assert!(users[4].key.is_err(), "a PatchOp");
    }

    #[test]
    fn a_scim_list_response_is_read_resource_by_resource() {
        let text = serde_json::json!({
            "schemas": [LIST_RESPONSE], "totalResults": 2,
            "Resources": [
                {"schemas": [USER_SCHEMA], "userName": "a", "name": {"givenName": "A"},
                 "phoneNumbers": [{"type": "mobile", "value": "(415) 555-0123"}]},
                {"userName": "b", "emails": [{"primary": true, "value": "b@example.com"}]},
                {"schemas": [USER_SCHEMA]},
            ]
        })
        .to_string();
        let users = read_scim(&text, &InstanceId::parse(INSTANCE).unwrap()).unwrap();
        assert_eq!(users[0].key, Ok(Key::Username("a".into())));
        assert_eq!(users[0].identity.last_name, RawField::Keep);
        assert_eq!(
            users[0].identity.mobile,
            RawField::Set("(415) 555-0123".into())
        );
        assert_eq!(users[1].place, Place::Resource(2));
        assert_eq!(
            users[1].identity.email,
            RawField::Set("b@example.com".into())
        );
        assert!(users[2].key.is_err());
        assert!(read_scim("[]", &InstanceId::parse(INSTANCE).unwrap()).is_err());
    }

    #[test]
    fn the_format_follows_the_extension() {
        assert_eq!(Format::of(Path::new("u.jsonl")), Format::Jsonl);
        assert_eq!(Format::of(Path::new("u.JSON")), Format::Scim);
        assert_eq!(Format::of(Path::new("export")), Format::Csv);
    }
}
