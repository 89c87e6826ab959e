//! Glob patterns over a user's paths, for collecting work: `*` and `?` within one name,
//! `**` as a whole component for any number of folders, `[abc]`, `[a-z]`, `[!x]`, and
//! `\` to take the next character literally. Matching ignores case, because students
//! save from Windows and macOS, where `Essay.DOCX` and `essay.docx` are the same file.
//!
//! Hand-written rather than `globset` because collecting needs one thing a regex-based
//! matcher does not offer: pruning, i.e. "can anything under this folder match?", so a
//! walk over a class's stores skips folders that cannot contain a match. Matching works
//! on components with a small set-of-positions automaton, so no pattern can make it
//! backtrack exponentially.

/// Longest pattern accepted, in bytes (as long as the longest path).
pub const MAX_PATTERN_BYTES: usize = crate::names::MAX_PATH_BYTES;

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    #[error("the pattern is empty")]
    Empty,
    #[error("the pattern is longer than {MAX_PATTERN_BYTES} bytes")]
    TooLong,
    #[error("the pattern has an empty folder name (\"//\" or a trailing '/')")]
    EmptyComponent,
    #[error("the pattern has a '[' without its closing ']'")]
    UnclosedClass,
    #[error("the pattern ends with a lone '\\'")]
    TrailingEscape,
}

/// A parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// `**`: zero or more whole components.
    AnyDepth,
    /// One component.
    Name(Vec<Tok>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Char(char),
    /// `?`
    One,
    /// `*`
    Star,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Glob {
    /// Parses a pattern. A leading `/` is ignored: patterns are always relative to each
    /// user's own folder.
    pub fn parse(pattern: &str) -> Result<Self, GlobError> {
        if pattern.len() > MAX_PATTERN_BYTES {
            return Err(GlobError::TooLong);
        }
        let pattern = pattern.strip_prefix('/').unwrap_or(pattern);
        if pattern.is_empty() {
            return Err(GlobError::Empty);
        }
        let mut parts = Vec::new();
        for component in split_unescaped(pattern) {
            if component.is_empty() {
                return Err(GlobError::EmptyComponent);
            }
            let part = if component == "**" {
                Part::AnyDepth
            } else {
                Part::Name(parse_component(&component)?)
            };
            // `**/**` means the same as `**`.
            if !(part == Part::AnyDepth && parts.last() == Some(&Part::AnyDepth)) {
                parts.push(part);
            }
        }
        Ok(Self { parts })
    }

    /// Whether `path` (`/`-separated, relative) matches the whole pattern.
    pub fn matches(&self, path: &str) -> bool {
        let mut states = self.start();
        for component in path.split('/') {
            states = self.step(&states, component);
            if states.is_empty() {
                return false;
            }
        }
        states.contains(&self.parts.len())
    }

    /// Whether some path strictly inside folder `dir` could match: `false` means a walk
    /// may skip the folder.
    pub fn may_match_inside(&self, dir: &str) -> bool {
        let mut states = self.start();
        for component in dir.split('/') {
            states = self.step(&states, component);
        }
        // At least one more component has to be matched by something.
        states.iter().any(|&i| i < self.parts.len())
    }

    fn start(&self) -> Vec<usize> {
        let mut states = vec![0];
        self.close(&mut states);
        states
    }

    /// Positions reachable after consuming `component` from any of `states`.
    fn step(&self, states: &[usize], component: &str) -> Vec<usize> {
        let mut next = Vec::new();
        for &i in states {
            match self.parts.get(i) {
                Some(Part::AnyDepth) => push_unique(&mut next, i),
                Some(Part::Name(toks)) if name_matches(toks, component) => {
                    push_unique(&mut next, i + 1)
                }
                _ => {}
            }
        }
        self.close(&mut next);
        next
    }

    /// Adds the positions after each `**`, which may match no component at all.
    fn close(&self, states: &mut Vec<usize>) {
        let mut k = 0;
        while k < states.len() {
            let i = states[k];
            if self.parts.get(i) == Some(&Part::AnyDepth) {
                push_unique(states, i + 1);
            }
            k += 1;
        }
    }
}

fn push_unique(v: &mut Vec<usize>, i: usize) {
    if !v.contains(&i) {
        v.push(i);
    }
}

/// Splits at `/` that are not escaped; keeps escapes in the pieces.
fn split_unescaped(pattern: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '/' => out.push(String::new()),
            '\\' => {
                let last = out.last_mut().expect("never empty");
                last.push('\\');
                if let Some(n) = chars.next() {
                    last.push(n);
                }
            }
            c => out.last_mut().expect("never empty").push(c),
        }
    }
    out
}

fn parse_component(s: &str) -> Result<Vec<Tok>, GlobError> {
    let chars: Vec<char> = s.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => {
                if toks.last() != Some(&Tok::Star) {
                    toks.push(Tok::Star);
                }
            }
            '?' => toks.push(Tok::One),
            '\\' => {
                i += 1;
                let c = *chars.get(i).ok_or(GlobError::TrailingEscape)?;
                toks.push(Tok::Char(c));
            }
            '[' => {
                let (tok, end) = parse_class(&chars, i)?;
                toks.push(tok);
                i = end;
            }
            c => toks.push(Tok::Char(c)),
        }
        i += 1;
    }
    Ok(toks)
}

/// Parses `[...]` starting at `open`; returns the class and the index of its `]`.
fn parse_class(chars: &[char], open: usize) -> Result<(Tok, usize), GlobError> {
    let mut i = open + 1;
    let negated = matches!(chars.get(i), Some('!' | '^'));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let mut c = *chars.get(i).ok_or(GlobError::UnclosedClass)?;
        if c == ']' && !first {
            return Ok((Tok::Class { negated, ranges }, i));
        }
        first = false;
        if c == '\\' {
            i += 1;
            c = *chars.get(i).ok_or(GlobError::TrailingEscape)?;
        }
        let mut hi = c;
        if chars.get(i + 1) == Some(&'-') && chars.get(i + 2).is_some_and(|&n| n != ']') {
            i += 2;
            hi = chars[i];
            if hi == '\\' {
                i += 1;
                hi = *chars.get(i).ok_or(GlobError::TrailingEscape)?;
            }
        }
        ranges.push((c, hi));
        i += 1;
    }
}

/// Whether one name matches one component's tokens: the classic two-pointer wildcard
/// match, linear apart from re-trying after the last `*`.
fn name_matches(toks: &[Tok], name: &str) -> bool {
    let name: Vec<char> = name.chars().collect();
    let (mut t, mut n) = (0, 0);
    let mut retry: Option<(usize, usize)> = None;
    while n < name.len() {
        match toks.get(t) {
            Some(Tok::Star) => {
                retry = Some((t, n));
                t += 1;
                continue;
            }
            Some(tok) if tok_matches(tok, name[n]) => {
                t += 1;
                n += 1;
                continue;
            }
            _ => {}
        }
        match retry {
            Some((st, sn)) => {
                t = st + 1;
                n = sn + 1;
                retry = Some((st, sn + 1));
            }
            None => return false,
        }
    }
    toks[t..].iter().all(|tok| *tok == Tok::Star)
}

fn tok_matches(tok: &Tok, c: char) -> bool {
    match tok {
        Tok::Char(p) => same_letter(*p, c),
        Tok::One => true,
        Tok::Star => false,
        Tok::Class { negated, ranges } => {
            let inside = ranges.iter().any(|&(lo, hi)| {
                (lo..=hi).contains(&c)
                    || fold(c).is_some_and(|f| (fold(lo)..=fold(hi)).contains(&Some(f)))
            });
            inside != *negated
        }
    }
}

fn same_letter(a: char, b: char) -> bool {
    a == b || fold(a) == fold(b)
}

/// The simple lowercase of a character when it is one character.
fn fold(c: char) -> Option<char> {
    let mut lower = c.to_lowercase();
    match (lower.next(), lower.next()) {
        (Some(l), None) => Some(l),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, path: &str) -> bool {
        Glob::parse(pattern).unwrap().matches(path)
    }

    #[test]
    fn single_components() {
        assert!(m("essay.docx", "essay.docx"));
        assert!(m("essay*.docx", "essay (final 2).docx"));
        assert!(m("*", "anything"));
        assert!(!m("*", "a/b"), "* stays inside one name");
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(m("*.*", "a.b.c"));
        assert!(m("*a*b*", "xxaxxbxx"));
        assert!(!m("*a*b*", "xxbxxaxx"));
        assert!(m("[abc]x", "bx"));
        assert!(!m("[!abc]x", "bx"));
        assert!(m("[^abc]x", "dx"));
        assert!(m("v[0-9]", "v7"));
        assert!(!m("v[0-9]", "vx"));
        assert!(m("[]]", "]"));
        assert!(m("[a-]", "-"));
        assert!(m("\\*", "*"));
        assert!(!m("\\*", "x"));
        assert!(m("a\\[1]", "a[1]"));
    }

    #[test]
    fn case_is_ignored() {
        assert!(m("essay*.docx", "Essay 1.DOCX"));
        assert!(m("übung/*", "ÜBUNG/x"));
        assert!(m("[a-c]", "B"));
    }

    #[test]
    fn folders() {
        let g = Glob::parse("Documents/History/essay*.docx").unwrap();
        assert!(g.matches("Documents/History/essay.docx"));
        assert!(!g.matches("Documents/essay.docx"));
        assert!(!g.matches("Documents/History/old/essay.docx"));
        assert!(g.may_match_inside("Documents"));
        assert!(g.may_match_inside("Documents/History"));
        assert!(!g.may_match_inside("Pictures"));
        assert!(!g.may_match_inside("Documents/History/old"));
        assert!(m("/a/b", "a/b"), "a leading / is ignored");
    }

    #[test]
    fn any_depth() {
        assert!(m("**/*.py", "a.py"));
        assert!(m("**/*.py", "x/y/z/a.py"));
        assert!(!m("**/*.py", "x/y/a.txt"));
        assert!(m("a/**/b", "a/b"));
        assert!(m("a/**/b", "a/x/y/b"));
        assert!(!m("a/**/b", "a/x/y/c"));
        assert!(m("a/**", "a/x/y"));
        assert!(!m("a/**", "b/x"));
        assert!(m("**", "any/thing/at/all"));
        assert!(m("**/x/**/y", "1/x/2/3/y"));
        let g = Glob::parse("a/**/b").unwrap();
        assert!(g.may_match_inside("a/q/r/s"));
        assert!(!g.may_match_inside("b"));
        assert!(Glob::parse("**/*.py").unwrap().may_match_inside("deep/er"));
    }

    #[test]
    fn refusals() {
        assert_eq!(Glob::parse(""), Err(GlobError::Empty));
        assert_eq!(Glob::parse("/"), Err(GlobError::Empty));
        assert_eq!(Glob::parse("a//b"), Err(GlobError::EmptyComponent));
        assert_eq!(Glob::parse("a/"), Err(GlobError::EmptyComponent));
        assert_eq!(Glob::parse("a[bc"), Err(GlobError::UnclosedClass));
        assert_eq!(Glob::parse("a\\"), Err(GlobError::TrailingEscape));
        assert_eq!(
            Glob::parse(&"a".repeat(MAX_PATTERN_BYTES + 1)),
            Err(GlobError::TooLong)
        );
    }

    #[test]
    fn no_exponential_blowup() {
        let g = Glob::parse(&format!("{}b", "*a".repeat(30))).unwrap();
        assert!(!g.matches(&"a".repeat(200)));
        let deep = Glob::parse("**/x/".repeat(20).trim_end_matches('/')).unwrap();
        assert!(!deep.matches("x/".repeat(19).trim_end_matches('/')));
        assert!(deep.matches("x/".repeat(20).trim_end_matches('/')));
    }

    proptest::proptest! {
        /// A pattern with no special characters matches exactly the equal path.
        #[test]
        fn literal_patterns(path in "[a-z]{1,5}(/[a-z]{1,5}){0,3}", other in "[a-z]{1,5}") {
            proptest::prop_assert!(m(&path, &path));
            proptest::prop_assert_eq!(m(&path, &other), path == other);
        }
    }
}
