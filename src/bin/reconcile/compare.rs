//! Pure: which users of the file are which of Connect's, and per user which fields
//! differ once the file's values are normalised as the function normalises them
//! (`validate_identity`). A field differs exactly when the function, given that value,
//! would change it: what the file leaves out (a SCIM attribute, an unmapped column) is
//! not compared, and an empty value differs from a value Connect holds (the function
//! would clear it).

use std::collections::{BTreeMap, HashMap};

use connect_identity_sync::domain::change::{FieldChange, IdentityInfo};
use connect_identity_sync::domain::document::{RawField, RawIdentity, validate_identity};
use connect_identity_sync::domain::identity::{Field, PhoneRegion};
use serde_json::{Value, json};

use crate::source::{FileUser, Key, Place};

/// How a user ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Agrees,
    Differs,
    OnlyInFile,
    OnlyInConnect,
    /// On both sides, but not every field could be compared: a value of the file the
    /// function would refuse, or Connect's user could not be read.
    CouldNotCompare(String),
    /// A row of the file that names no user (or one the file names twice).
    Unreadable(String),
}

impl Verdict {
    fn name(&self) -> &'static str {
        match self {
            Verdict::Agrees => "agrees",
            Verdict::Differs => "differs",
            Verdict::OnlyInFile => "onlyInFile",
            Verdict::OnlyInConnect => "onlyInConnect",
            Verdict::CouldNotCompare(_) => "couldNotCompare",
            Verdict::Unreadable(_) => "unreadable",
        }
    }
}

/// What the correction of one user sets (`Some`) or clears (`None`): the values the
/// function would send, already normalised.
pub type Correction = Vec<(Field, Option<String>)>;

/// One user's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserResult {
    pub place: Option<Place>,
    pub user_id: Option<String>,
    pub verdict: Verdict,
    pub differing: Vec<Field>,
    /// Fields whose value in the file the function would refuse.
    pub invalid: Vec<Field>,
    pub correction: Correction,
}

impl UserResult {
    fn new(place: Option<Place>, user_id: Option<String>, verdict: Verdict) -> Self {
        UserResult {
            place,
            user_id,
            verdict,
            differing: Vec::new(),
            invalid: Vec::new(),
            correction: Vec::new(),
        }
    }

    /// The user as the report shows it: ids, positions and field names only.
    pub fn to_json(&self) -> Value {
        let mut out = json!({ "result": self.verdict.name() });
        match self.place {
            Some(Place::Line(n)) => out["line"] = json!(n),
            Some(Place::Resource(n)) => out["resource"] = json!(n),
            None => {}
        }
        if let Some(id) = &self.user_id {
            out["userId"] = json!(id);
        }
        if !self.differing.is_empty() {
            out["fields"] = json!(names(&self.differing));
        }
        if !self.invalid.is_empty() {
            out["invalidFields"] = json!(names(&self.invalid));
        }
        if let Verdict::CouldNotCompare(why) | Verdict::Unreadable(why) = &self.verdict {
            out["reason"] = json!(why);
        }
        out
    }
}

fn names(fields: &[Field]) -> Vec<&'static str> {
    fields.iter().map(|f| f.as_str()).collect()
}

/// A Connect user as `ListUsers` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub username: String,
    pub id: String,
}

/// The file matched against Connect's listing.
#[derive(Debug, Default)]
pub struct Matching {
    /// (index into the file's users, Connect user id): to read and compare.
    pub pairs: Vec<(usize, String)>,
    /// Users settled by the matching alone.
    pub settled: Vec<UserResult>,
}

/// Which Connect users a row of the file names, once matched against the listing.
enum Named<'a> {
    /// One Connect user.
    One(&'a str),
    /// None: a user only in the file (with its id when the row gave one).
    Nobody(Option<String>),
    /// A row whose `UserId` and `Username` do not name the same Connect user: the
    /// Connect users it names (one or two), and why it is not compared.
    Conflict(Vec<&'a str>, String),
}

/// Matches each user of the file to a Connect user by `UserId`, else by exact
/// `Username` (as the function resolves one). Not compared, so that no row's values
/// are ever written onto another agent: a row whose `UserId` and `Username` do not name
/// the same Connect user, and a Connect user the file names more than once (such a row
/// included), since the file does not say which row holds.
pub fn match_users(file: &[FileUser], listed: &[Listed]) -> Matching {
    let by_name: HashMap<&str, &str> = listed
        .iter()
        .map(|l| (l.username.as_str(), l.id.as_str()))
        .collect();
    let by_id: HashMap<&str, &str> = listed
        .iter()
        .map(|l| (l.id.as_str(), l.id.as_str()))
        .collect();
    let mut matching = Matching::default();
    let named: Vec<Result<Named<'_>, &String>> = file
        .iter()
        .map(|user| {
            let key = user.key.as_ref()?;
            Ok(match key {
                Key::UserId(id) => by_id
                    .get(id.as_str())
                    .map_or_else(|| Named::Nobody(Some(id.clone())), |c| Named::One(c)),
                Key::Username(name) => by_name
                    .get(name.as_str())
                    .map_or(Named::Nobody(None), |c| Named::One(c)),
                Key::Both { user_id, username } => {
                    match (by_id.get(user_id.as_str()), by_name.get(username.as_str())) {
                        (Some(a), Some(b)) if a == b => Named::One(a),
                        (None, None) => Named::Nobody(Some(user_id.clone())),
                        (Some(a), Some(b)) => Named::Conflict(
                            vec![a, b],
                            format!("its UserId and Username name two different Connect users ({a}, {b})"),
                        ),
                        (Some(a), None) => Named::Conflict(
                            vec![a],
                            "its Username is not the Connect username of its UserId".into(),
                        ),
                        (None, Some(b)) => Named::Conflict(
                            vec![b],
                            "its UserId names no Connect user but its Username does".into(),
                        ),
                    }
                }
            })
        })
        .collect();
    // Connect user id → how many rows of the file name it.
    let mut rows: HashMap<&str, usize> = HashMap::new();
    for n in named.iter().flatten() {
        let ids: &[&str] = match n {
            Named::One(id) => std::slice::from_ref(id),
            Named::Conflict(ids, _) => ids,
            Named::Nobody(_) => &[],
        };
        for id in ids {
            *rows.entry(id).or_default() += 1;
        }
    }
    for (i, (user, named)) in file.iter().zip(named).enumerate() {
        let place = Some(user.place);
        let settled = match named {
            Err(why) => UserResult::new(place, None, Verdict::Unreadable(why.clone())),
            Ok(Named::Nobody(id)) => UserResult::new(place, id, Verdict::OnlyInFile),
            Ok(Named::Conflict(ids, why)) => {
                UserResult::new(place, Some(ids[0].to_owned()), Verdict::Unreadable(why))
            }
            Ok(Named::One(id)) => match rows[id] {
                1 => {
                    matching.pairs.push((i, id.to_owned()));
                    continue;
                }
                n => UserResult::new(
                    place,
                    Some(id.to_owned()),
                    Verdict::Unreadable(format!("the file names this user {n} times")),
                ),
            },
        };
        matching.settled.push(settled);
    }
    for l in listed {
        if !rows.contains_key(l.id.as_str()) {
            matching.settled.push(UserResult::new(
                None,
                Some(l.id.clone()),
                Verdict::OnlyInConnect,
            ));
        }
    }
    matching
}

/// Compares one user of the file with Connect's identity of that user.
pub fn compare(
    user: &FileUser,
    user_id: &str,
    current: &IdentityInfo,
    region: Option<PhoneRegion>,
) -> UserResult {
    let mut result = UserResult::new(Some(user.place), Some(user_id.to_owned()), Verdict::Agrees);
    let mut reasons = Vec::new();
    for field in Field::ALL {
        let raw = user.identity.get(field);
        if *raw == RawField::Keep {
            continue;
        }
        // Each field on its own, so that one refused value leaves the others compared.
        let mut one = RawIdentity::default();
        one.set(field, raw.clone());
        let wanted = match validate_identity(&one, region) {
            Ok(change) => match change.get(field) {
                FieldChange::Keep => continue,
                FieldChange::Set(v) => Some(v.to_owned()),
                FieldChange::Clear => None,
            },
            Err(refused) => {
                result.invalid.push(field);
                reasons.push(refused.message);
                continue;
            }
        };
        if current.get(field) != wanted.as_deref() {
            result.differing.push(field);
            result.correction.push((field, wanted));
        }
    }
    result.verdict = if !reasons.is_empty() {
        Verdict::CouldNotCompare(format!(
            "a value the function would refuse: {}",
            reasons.join("; ")
        ))
    } else if result.differing.is_empty() {
        Verdict::Agrees
    } else {
        Verdict::Differs
    };
    result
}

/// A Connect user found on both sides whose identity could not be read.
pub fn unread(user: &FileUser, user_id: &str, why: String) -> UserResult {
    UserResult::new(
        Some(user.place),
        Some(user_id.to_owned()),
        Verdict::CouldNotCompare(why),
    )
}

/// The counts of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub in_both: u64,
    pub agree: u64,
    pub differ: u64,
    pub could_not_compare: u64,
    pub only_in_file: u64,
    pub only_in_connect: u64,
    pub unreadable: u64,
    /// Per field, the users whose value differs.
    pub fields: BTreeMap<Field, u64>,
}

impl Tally {
    pub fn of(results: &[UserResult]) -> Tally {
        let mut t = Tally {
            fields: Field::ALL.into_iter().map(|f| (f, 0)).collect(),
            ..Tally::default()
        };
        for r in results {
            match r.verdict {
                Verdict::Agrees => t.agree += 1,
                Verdict::Differs => t.differ += 1,
                Verdict::CouldNotCompare(_) => t.could_not_compare += 1,
                Verdict::OnlyInFile => t.only_in_file += 1,
                Verdict::OnlyInConnect => t.only_in_connect += 1,
                Verdict::Unreadable(_) => t.unreadable += 1,
            }
            for f in &r.differing {
                *t.fields.entry(*f).or_default() += 1;
            }
        }
        t.in_both = t.agree + t.differ + t.could_not_compare;
        t
    }

    /// 0 when every user found on both sides agrees, 1 when a field differs, 2 when
    /// a user could not be compared.
    pub fn exit_code(&self) -> u8 {
        if self.could_not_compare + self.unreadable > 0 {
            2
        } else if self.fields.values().any(|n| *n > 0) {
            1
        } else {
            0
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "inBoth": self.in_both,
            "agree": self.agree,
            "differ": self.differ,
            "couldNotCompare": self.could_not_compare,
            "onlyInFile": self.only_in_file,
            "onlyInConnect": self.only_in_connect,
            "unreadable": self.unreadable,
            "fieldsDiffering": self.fields.iter().map(|(f, n)| (f.as_str().to_owned(), json!(n))).collect::<serde_json::Map<_, _>>(),
        })
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{:<26}{:>8}", "users", "count")?;
        for (label, n) in [
            ("in both", self.in_both),
            ("  agree", self.agree),
            ("  differ", self.differ),
            ("  could not compare", self.could_not_compare),
            ("only in the file", self.only_in_file),
            ("only in Connect", self.only_in_connect),
            ("unreadable in the file", self.unreadable),
        ] {
            writeln!(f, "{label:<26}{n:>8}")?;
        }
        writeln!(f)?;
        writeln!(f, "{:<26}{:>8}", "field", "differ")?;
        for (field, n) in &self.fields {
            writeln!(f, "{:<26}{n:>8}", field.as_str())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region() -> Option<PhoneRegion> {
        Some("US".parse().unwrap())
    }

    fn file_user(line: u64, key: Key, fields: &[(Field, &str)]) -> FileUser {
        let mut identity = RawIdentity::default();
        for (f, v) in fields {
            identity.set(*f, RawField::Set((*v).to_owned()));
        }
        FileUser {
            place: Place::Line(line),
            key: Ok(key),
            identity,
        }
    }

    fn connect() -> IdentityInfo {
        IdentityInfo {
            first_name: Some("José".into()),
            last_name: Some("Doe".into()),
            email: Some("jose.doe@example.com".into()),
            secondary_email: None,
            mobile: Some("+14155550123".into()),
        }
    }

    #[test]
    fn values_that_differ_only_in_their_form_agree() {
        let user = file_user(
            2,
            Key::Username("jdoe".into()),
            &[
                (Field::FirstName, "  Jose\u{301} "),
                (Field::LastName, "Doe"),
                (Field::Email, " jose.doe@example.com"),
                (Field::SecondaryEmail, ""),
                (Field::Mobile, "(415) 555-0123"),
            ],
        );
        let r = compare(&user, "u-1", &connect(), region());
        assert_eq!(r.verdict, Verdict::Agrees);
        assert!(r.correction.is_empty());
    }

    #[test]
    fn a_differing_value_and_a_value_connect_holds_alone_are_differences() {
        let mut current = connect();
        current.secondary_email = Some("old@example.com".into());
        let user = file_user(
            3,
            Key::Username("jdoe".into()),
            &[
                (Field::LastName, "Doe-Park"),
                (Field::SecondaryEmail, " "),
                (Field::Mobile, "415 555 0199"),
            ],
        );
        let r = compare(&user, "u-1", &current, region());
        assert_eq!(r.verdict, Verdict::Differs);
        assert_eq!(
            r.differing,
            [Field::LastName, Field::SecondaryEmail, Field::Mobile]
        );
        assert_eq!(
            r.correction,
            vec![
                (Field::LastName, Some("Doe-Park".into())),
                (Field::SecondaryEmail, None),
                (Field::Mobile, Some("+14155550199".into())),
            ]
        );
    }

    #[test]
    fn an_email_in_another_letter_case_is_a_difference_as_the_function_would_apply_it() {
        let user = file_user(
            2,
            Key::Username("jdoe".into()),
            &[(Field::Email, "Jose.Doe@example.com")],
        );
        let r = compare(&user, "u-1", &connect(), region());
        assert_eq!(r.differing, [Field::Email]);
    }

    #[test]
    fn a_value_the_function_would_refuse_is_not_compared_and_named_without_its_value() {
        let user = file_user(
            4,
            Key::Username("jdoe".into()),
            &[(Field::Mobile, "555-01"), (Field::LastName, "Dough")],
        );
        let r = compare(&user, "u-1", &connect(), region());
        assert!(matches!(&r.verdict, Verdict::CouldNotCompare(why) if !why.contains("555")));
        assert_eq!(r.invalid, [Field::Mobile]);
        assert_eq!(
            r.differing,
            [Field::LastName],
            "the other fields still count"
        );
        let json = r.to_json().to_string();
        assert!(!json.contains("555") && !json.contains("Dough"), "{json}");
    }

    #[test]
    fn users_are_matched_by_id_or_exact_username_and_a_user_named_twice_is_not_compared() {
        let listed = vec![
            Listed {
                username: "a".into(),
                id: "u-a".into(),
            },
            Listed {
                username: "b".into(),
                id: "u-b".into(),
            },
            Listed {
                username: "c".into(),
                id: "u-c".into(),
            },
            Listed {
                username: "d".into(),
                id: "u-d".into(),
            },
        ];
        let file = vec![
            file_user(2, Key::Username("a".into()), &[]),
            file_user(3, Key::UserId("u-b".into()), &[]),
            file_user(4, Key::Username("A".into()), &[]),
            file_user(5, Key::Username("c".into()), &[]),
            file_user(6, Key::UserId("u-c".into()), &[]),
            FileUser {
                place: Place::Line(7),
                key: Err("names no user".into()),
                identity: RawIdentity::default(),
            },
        ];
        let m = match_users(&file, &listed);
        assert_eq!(m.pairs, vec![(0, "u-a".to_owned()), (1, "u-b".to_owned())]);
        let verdicts: Vec<_> = m
            .settled
            .iter()
            .map(|r| (r.place, r.user_id.clone(), r.verdict.name()))
            .collect();
        assert_eq!(
            verdicts,
            vec![
                (Some(Place::Line(4)), None, "onlyInFile"),
                (Some(Place::Line(5)), Some("u-c".into()), "unreadable"),
                (Some(Place::Line(6)), Some("u-c".into()), "unreadable"),
                (Some(Place::Line(7)), None, "unreadable"),
                (None, Some("u-d".into()), "onlyInConnect"),
            ]
        );
    }

    #[test]
    fn a_row_whose_user_id_and_username_name_two_users_compares_neither() {
        let listed: Vec<Listed> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| Listed {
                username: (*n).into(),
                id: format!("u-{n}"),
            })
            .collect();
        let both = |line, id: &str, name: &str| {
            file_user(
                line,
                Key::Both {
                    user_id: id.into(),
                    username: name.into(),
                },
                &[(Field::Email, "b@example.com")],
            )
        };
        let file = vec![
            // A's id with B's username, then B on a row of its own.
            both(2, "u-a", "b"),
            file_user(3, Key::Username("b".into()), &[]),
            // Both name C: compared.
            both(4, "u-c", "c"),
            // D's id with a username no Connect user has.
            both(5, "u-d", "zz"),
            // Neither side known: only in the file.
            both(6, "u-x", "zz"),
        ];
        let m = match_users(&file, &listed);
        assert_eq!(m.pairs, vec![(2, "u-c".to_owned())]);
        let verdicts: Vec<_> = m
            .settled
            .iter()
            .map(|r| (r.place, r.user_id.clone(), r.verdict.name()))
            .collect();
        assert_eq!(
            verdicts,
            vec![
                (Some(Place::Line(2)), Some("u-a".into()), "unreadable"),
                (Some(Place::Line(3)), Some("u-b".into()), "unreadable"),
                (Some(Place::Line(5)), Some("u-d".into()), "unreadable"),
                (Some(Place::Line(6)), Some("u-x".into()), "onlyInFile"),
            ]
        );
        assert!(m.settled.iter().all(|r| r.correction.is_empty()));
        assert!(
            matches!(&m.settled[0].verdict, Verdict::Unreadable(why) if why.contains("u-a") && why.contains("u-b")),
            "{:?}",
            m.settled[0]
        );
        assert_eq!(Tally::of(&m.settled).exit_code(), 2);
    }

    #[test]
    fn the_exit_code_says_whether_anything_differs_or_could_not_be_compared() {
        let agree = UserResult::new(None, None, Verdict::Agrees);
        let mut differ = UserResult::new(None, None, Verdict::Differs);
        differ.differing = vec![Field::Mobile];
        let alone = UserResult::new(None, None, Verdict::OnlyInConnect);
        let broken = UserResult::new(None, None, Verdict::CouldNotCompare("x".into()));
        assert_eq!(Tally::of(&[agree.clone(), alone.clone()]).exit_code(), 0);
        let t = Tally::of(&[agree.clone(), differ.clone(), alone]);
        assert_eq!(t.exit_code(), 1);
        assert_eq!((t.in_both, t.fields[&Field::Mobile]), (2, 1));
        assert_eq!(Tally::of(&[differ, broken]).exit_code(), 2);
    }
}
