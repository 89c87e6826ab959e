use super::*;

fn name(s: &str) -> UserName {
    UserName::parse(s).unwrap()
}

/// Issue 15 item 7: an unknown name must cost the same argon2 work as a wrong
/// password, or response times tell which names exist.
#[test]
fn unknown_names_cost_one_password_check_like_wrong_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let db = UserDb::open(dir.path()).unwrap();
    db.add(&name("asdf"), Role::Student, "right password")
        .unwrap();
    let cases = [
        ("asdf", "wrong password", Auth::WrongPassword),
        ("nobody", "wrong password", Auth::UnknownUser),
        ("ASDF", "right password", Auth::UnknownUser),
        ("not a valid name/", "x", Auth::UnknownUser),
    ];
    for (who, password, want) in cases {
        let before = db.password_checks();
        assert_eq!(db.authenticate(who, password).unwrap(), want, "{who}");
        assert_eq!(db.password_checks() - before, 1, "checks for {who:?}");
    }
}

#[test]
fn add_authenticate_passwd_disable() {
    let dir = tempfile::tempdir().unwrap();
    let db = UserDb::open(dir.path()).unwrap();
    assert!(db.is_empty().unwrap());
    db.add(&name("asdf"), Role::Student, "pw1").unwrap();
    db.add(&name("teach"), Role::Teacher, "pw2").unwrap();
    assert!(matches!(
        db.add(&name("asdf"), Role::Student, "x"),
        Err(UsersError::Exists(_))
    ));
    assert!(
        matches!(db.authenticate("asdf", "pw1").unwrap(), Auth::Ok(u) if u.role == Role::Student)
    );
    // Cached path gives the same answers.
    assert!(matches!(
        db.authenticate("asdf", "pw1").unwrap(),
        Auth::Ok(_)
    ));
    assert_eq!(db.authenticate("asdf", "pw2").unwrap(), Auth::WrongPassword);
    assert_eq!(db.authenticate("nobody", "pw1").unwrap(), Auth::UnknownUser);

    // Another process (a second UserDb) changes the file: this one notices.
    let other = UserDb::open(dir.path()).unwrap();
    other.passwd(&name("asdf"), "new").unwrap();
    assert_eq!(db.authenticate("asdf", "pw1").unwrap(), Auth::WrongPassword);
    assert!(matches!(
        db.authenticate("asdf", "new").unwrap(),
        Auth::Ok(_)
    ));
    other.disable(&name("asdf")).unwrap();
    assert_eq!(db.authenticate("asdf", "new").unwrap(), Auth::Disabled);
    assert!(matches!(
        db.disable(&name("ghost")),
        Err(UsersError::NotFound(_))
    ));

    let listed = db.list().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed[0].disabled);
    assert_eq!(listed[1].role, Role::Teacher);
}

#[test]
fn file_keeps_no_plaintext_and_salts_differ() {
    let dir = tempfile::tempdir().unwrap();
    let db = UserDb::open(dir.path()).unwrap();
    db.add(&name("a"), Role::Student, "same-secret").unwrap();
    db.add(&name("b"), Role::Student, "same-secret").unwrap();
    let text = fs::read_to_string(dir.path().join("users.toml")).unwrap();
    assert!(!text.contains("same-secret"));
    let hashes: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("password_hash"))
        .collect();
    assert_eq!(hashes.len(), 2);
    assert!(hashes.iter().all(|h| h.contains("$argon2id$")));
    assert_ne!(hashes[0], hashes[1]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.path().join("users.toml"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "users.toml must not be readable by others");
    }
}

#[test]
fn bad_passwords_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = UserDb::open(dir.path()).unwrap();
    assert!(matches!(
        db.add(&name("a"), Role::Student, ""),
        Err(UsersError::EmptyPassword)
    ));
    let long = "x".repeat(MAX_PASSWORD_BYTES + 1);
    assert!(matches!(
        db.add(&name("a"), Role::Student, &long),
        Err(UsersError::PasswordTooLong)
    ));
    assert!(db.is_empty().unwrap());
    assert!(!dir.path().join("users.toml").exists());
}

#[test]
fn add_many_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = UserDb::open(dir.path()).unwrap();
    db.add(&name("taken"), Role::Student, "pw").unwrap();
    let new = |n: &str, pw: &str| NewUser {
        name: name(n),
        role: Role::Student,
        password: pw.into(),
    };
    let err = db
        .add_many(&[new("a", "1"), new("taken", "2"), new("b", "3")])
        .unwrap_err();
    assert!(
        matches!(&err, UsersError::ExistMany(v) if v == &["taken"]),
        "{err}"
    );
    assert!(matches!(
        db.add_many(&[new("a", "1"), new("a", "2")]),
        Err(UsersError::Duplicate(_))
    ));
    assert!(matches!(
        db.add_many(&[new("a", "1"), new("b", "")]),
        Err(UsersError::EmptyPassword)
    ));
    assert_eq!(
        db.list().unwrap().len(),
        1,
        "nothing was added by a refused batch"
    );

    let added = db.add_many(&[new("a", "1"), new("b", "2")]).unwrap();
    assert_eq!(added.len(), 2);
    assert!(matches!(db.authenticate("a", "1").unwrap(), Auth::Ok(_)));
    assert!(matches!(db.authenticate("b", "2").unwrap(), Auth::Ok(_)));
    assert_eq!(db.list().unwrap().len(), 3);
}

#[test]
fn corrupt_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("users.toml"), "[[user]]\nname = 3\n").unwrap();
    let err = UserDb::open(dir.path()).err().unwrap();
    assert!(err.to_string().contains("not a valid users file"), "{err}");
}
