//! `ects user import CLASS.csv`: a class list in, accounts out, all or nothing.
//!
//! The list is what a school office exports from a spreadsheet: one user per line,
//! `name,role[,password]`. Accepted as well: a header line `name,role[,password]`
//! (any case), `;` instead of `,` (European spreadsheet exports), fields in double
//! quotes (`""` for a quote inside), a UTF-8 byte-order mark, CRLF line ends, blank
//! lines and `#` comment lines. An empty role means student. Spaces around a field are
//! dropped. Every line is checked before anyone is added, and every problem is reported
//! with its line number.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use rand::Rng;

use crate::names::UserName;
use crate::users::{NewUser, Role, User};

/// One accepted line of the class list.
#[derive(Debug)]
pub struct Row {
    pub name: UserName,
    pub role: Role,
    /// `None`: generate one.
    pub password: Option<String>,
}

/// What is wrong with one line, for the admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub message: String,
}

/// Parses and checks a whole class list against the users that exist already.
/// Returns every problem found, not just the first.
pub fn parse_class_list(text: &str, existing: &[User]) -> Result<Vec<Row>, Vec<Problem>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let delimiter = detect_delimiter(text);
    let existing: HashMap<String, &str> = existing
        .iter()
        .map(|u| (u.name.as_str().to_ascii_lowercase(), u.name.as_str()))
        .collect();
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    // Lower-cased name -> first line, to catch names that differ only in case: Windows
    // treats `Anna` and `anna` as one account, so they cannot be two students here.
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut first_content_line = true;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut problem = |message: String| problems.push(Problem { line, message });
        let fields = match split_fields(trimmed, delimiter) {
            Ok(f) => f,
            Err(e) => {
                problem(e);
                continue;
            }
        };
        let is_first = std::mem::replace(&mut first_content_line, false);
        if is_first && is_header(&fields) {
            continue;
        }
        if fields.len() > 3 {
            problem(format!(
                "{} fields; expected name{d}role{d}password (the password may be left out)",
                fields.len(),
                d = delimiter
            ));
            continue;
        }
        let name = match UserName::parse_new(&fields[0]) {
            Ok(n) => n,
            Err(e) => {
                problem(e.to_string());
                continue;
            }
        };
        let role = match fields.get(1).map(|r| r.to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("student") => Role::Student,
            Some("teacher") => Role::Teacher,
            Some(_) => {
                problem(format!(
                    "the role {:?} of {name} is neither student nor teacher",
                    fields[1]
                ));
                continue;
            }
        };
        let password = fields.get(2).filter(|p| !p.is_empty()).cloned();
        if let Some(pw) = &password
            && let Err(e) = crate::users::check_new_password(pw)
        {
            problem(format!("the password of {name}: {e}"));
            continue;
        }
        let key = name.as_str().to_ascii_lowercase();
        if let Some(first) = seen.get(&key) {
            problem(format!(
                "{name} is already on line {first} (names that differ only in case count as the same)"
            ));
            continue;
        }
        seen.insert(key.clone(), line);
        if let Some(other) = existing.get(&key) {
            let message = if *other == name.as_str() {
                format!("user {name} already exists")
            } else {
                format!("user {other} already exists, which differs from {name} only in case")
            };
            problem(message);
            continue;
        }
        rows.push(Row {
            name,
            role,
            password,
        });
    }
    if rows.is_empty() && problems.is_empty() {
        problems.push(Problem {
            line: 0,
            message: "the list names no users".into(),
        });
    }
    if problems.is_empty() {
        Ok(rows)
    } else {
        Err(problems)
    }
}

/// `;` when the first content line has a `;` and no `,`, else `,`.
fn detect_delimiter(text: &str) -> char {
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or("");
    if first.contains(';') && !first.contains(',') {
        ';'
    } else {
        ','
    }
}

/// Splits one line into trimmed fields; a field may be quoted (`"a ""b"""`).
fn split_fields(line: &str, delimiter: char) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
            chars.next();
        }
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("a quoted field has no closing quote".into()),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
                chars.next();
            }
            match chars.peek() {
                None => {}
                Some(c) if *c == delimiter => {}
                Some(_) => return Err("text after a closing quote".into()),
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == delimiter {
                    break;
                }
                field.push(c);
                chars.next();
            }
            field = field.trim().to_owned();
        }
        fields.push(field);
        // Past the delimiter, or done.
        if chars.next().is_none() {
            return Ok(fields);
        }
    }
}

fn is_header(fields: &[String]) -> bool {
    let lower: Vec<String> = fields.iter().map(|f| f.to_ascii_lowercase()).collect();
    lower.len() >= 2 && lower[0] == "name" && lower[1] == "role"
}

/// Letters and digits nobody misreads on a printed slip: no 0/o, 1/l/i.
const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";

/// A new password: three groups of four from [`ALPHABET`] (about 59 bits), e.g.
/// `k7vq-mx3d-p9ra`, typeable by a child from a printed slip.
pub fn generate_password(rng: &mut impl Rng) -> String {
    let mut out = String::with_capacity(14);
    for group in 0..3 {
        if group > 0 {
            out.push('-');
        }
        for _ in 0..4 {
            out.push(ALPHABET[rng.gen_range(0..ALPHABET.len())] as char);
        }
    }
    out
}

/// The accounts to create, with generated passwords filled in. The second value lists
/// (name, role, password) of the generated ones, for the passwords file.
pub fn with_passwords(
    rows: Vec<Row>,
    rng: &mut impl Rng,
) -> (Vec<NewUser>, Vec<(UserName, Role, String)>) {
    let mut generated = Vec::new();
    let users = rows
        .into_iter()
        .map(|row| {
            let password = match row.password {
                Some(p) => p,
                None => {
                    let p = generate_password(rng);
                    generated.push((row.name.clone(), row.role, p.clone()));
                    p
                }
            };
            NewUser {
                name: row.name,
                role: row.role,
                password,
            }
        })
        .collect();
    (users, generated)
}

/// Writes `name,role,password` lines to a new file only its owner can read (0600 on
/// Unix). Refuses to replace an existing file: an older list may be the only copy.
pub fn write_passwords_file(path: &Path, entries: &[(UserName, Role, String)]) -> io::Result<()> {
    let mut options = crate::private::open_options();
    options.write(true).create_new(true);
    let mut file: File = options.open(path)?;
    let mut text = String::from("name,role,password\n");
    for (name, role, password) in entries {
        text.push_str(&format!("{name},{role},{password}\n"));
    }
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn user(n: &str) -> User {
        User {
            name: UserName::parse(n).unwrap(),
            role: Role::Student,
            disabled: false,
        }
    }

    #[test]
    fn accepts_header_quotes_semicolons_bom_and_comments() {
        let text = "\u{feff}Name;Role;Password\r\n# class 7b\r\n\r\nanna;student;\r\n\"bo.b\" ; Teacher ; \"pa;ss\"\"word\"\r\nc-3;;\r\nd_4\r\n";
        let rows = parse_class_list(text, &[]).unwrap();
        let got: Vec<_> = rows
            .iter()
            .map(|r| (r.name.as_str(), r.role, r.password.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("anna", Role::Student, None),
                ("bo.b", Role::Teacher, Some("pa;ss\"word")),
                ("c-3", Role::Student, None),
                ("d_4", Role::Student, None),
            ]
        );
    }

    #[test]
    fn a_user_called_name_is_not_a_header_without_role() {
        let rows = parse_class_list("name,student\nx,teacher\n", &[]).unwrap();
        assert_eq!(rows[0].name.as_str(), "name");
    }

    #[test]
    fn reports_every_problem_with_its_line() {
        let text = "name,role,password\n\
                    ok1,student\n\
                    bad name,student\n\
                    ok1,teacher\n\
                    OK1,student\n\
                    x,admin\n\
                    .hidden,student\n\
                    old,student\n\
                    Old2,student\n\
                    q,student,\"open\n\
                    a,b,c,d\n\
                    ok2,teacher,long-enough\n";
        let problems = parse_class_list(text, &[user("old"), user("old2")]).unwrap_err();
        let lines: Vec<usize> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![3, 4, 5, 6, 7, 8, 9, 10, 11], "{problems:#?}");
        let all: String = problems.iter().map(|p| p.message.clone() + "\n").collect();
        for needle in [
            "may only contain",
            "already on line 2",
            "neither student nor teacher",
            "must not start with '.'",
            "user old already exists",
            "user old2 already exists, which differs from Old2 only in case",
            "no closing quote",
            "4 fields",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
    }

    #[test]
    fn empty_list_and_bad_password_are_problems() {
        assert_eq!(
            parse_class_list("# nothing\n\n", &[]).unwrap_err()[0].message,
            "the list names no users"
        );
        let long = "x".repeat(crate::users::MAX_PASSWORD_BYTES + 1);
        let p = parse_class_list(&format!("a,student,{long}\n"), &[]).unwrap_err();
        assert_eq!(p[0].line, 1);
        assert!(p[0].message.contains("longer than"), "{}", p[0].message);
    }

    #[test]
    fn generated_passwords_are_readable_and_differ() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let a = generate_password(&mut rng);
        let b = generate_password(&mut rng);
        assert_ne!(a, b);
        assert_eq!(a.len(), 14);
        for c in a.chars().filter(|c| *c != '-') {
            assert!(ALPHABET.contains(&(c as u8)), "{c} in {a}");
        }
        assert!(!a.contains(['0', 'o', '1', 'l', 'i']));
        let rows = parse_class_list("a\nb,teacher,given-pw\n", &[]).unwrap();
        let (users, generated) = with_passwords(rows, &mut rng);
        assert_eq!(users.len(), 2);
        assert_eq!(users[1].password, "given-pw");
        assert_eq!(generated.len(), 1);
        assert_eq!(generated[0].0.as_str(), "a");
        assert_eq!(users[0].password, generated[0].2);
    }

    #[test]
    fn passwords_file_is_private_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw.csv");
        let entry = (UserName::parse("a").unwrap(), Role::Student, "p".to_owned());
        write_passwords_file(&path, std::slice::from_ref(&entry)).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "name,role,password\na,student,p\n"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let err = write_passwords_file(&path, &[entry]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "name,role,password\na,student,p\n"
        );
    }
}
