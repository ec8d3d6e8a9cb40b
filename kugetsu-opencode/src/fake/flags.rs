//! The real CLI's strict flag parsing: an unknown flag prints the help and exits 1.

use super::*;

#[derive(Default)]
pub(super) struct Parsed {
    pub(super) flags: BTreeMap<&'static str, Vec<String>>,
    pub(super) positionals: Vec<String>,
}

impl Parsed {
    pub(super) fn has(&self, name: &str) -> bool {
        self.flags.contains_key(name)
    }
    pub(super) fn value(&self, name: &str) -> Option<&str> {
        self.flags.get(name).and_then(|v| v.last()).map(String::as_str)
    }
}

/// (long name, short, takes a value)
pub(super) type FlagSpec = (&'static str, Option<char>, bool);

pub(super) const GLOBAL_FLAGS: &[FlagSpec] = &[
    ("help", Some('h'), false),
    ("version", Some('v'), false),
    ("print-logs", None, false),
    ("log-level", None, true),
    ("pure", None, false),
];

pub(super) const RUN_FLAGS: &[FlagSpec] = &[
    ("command", None, true),
    ("continue", Some('c'), false),
    ("session", Some('s'), true),
    ("fork", None, false),
    ("share", None, false),
    ("model", Some('m'), true),
    ("agent", None, true),
    ("format", None, true),
    ("file", Some('f'), true),
    ("title", None, true),
    ("attach", None, true),
    ("password", Some('p'), true),
    ("username", Some('u'), true),
    ("dir", None, true),
    ("port", None, true),
    ("variant", None, true),
    ("thinking", None, false),
    ("interactive", Some('i'), false),
    ("auto", None, false),
    ("yolo", None, false),
    ("dangerously-skip-permissions", None, false),
];

pub(super) const TUI_FLAGS: &[FlagSpec] = &[
    ("port", None, true),
    ("hostname", None, true),
    ("model", Some('m'), true),
    ("continue", Some('c'), false),
    ("session", Some('s'), true),
    ("fork", None, false),
    ("prompt", None, true),
    ("agent", None, true),
    ("auto", None, false),
];

pub(super) const LIST_FLAGS: &[FlagSpec] =
    &[("max-count", Some('n'), true), ("format", None, true)];
pub(super) const DB_FLAGS: &[FlagSpec] = &[("format", None, true)];
pub(super) const SERVE_FLAGS: &[FlagSpec] =
    &[("port", None, true), ("hostname", None, true), ("mdns", None, false), ("cors", None, true)];
pub(super) const EXPORT_FLAGS: &[FlagSpec] = &[("sanitize", None, false)];

pub(super) fn parse(
    args: &[String],
    specs: &[&[FlagSpec]],
    help: &'static str,
) -> Result<Parsed, Stop> {
    let find_long = |name: &str| specs.iter().flat_map(|s| s.iter()).find(|f| f.0 == name);
    let find_short = |c: char| specs.iter().flat_map(|s| s.iter()).find(|f| f.1 == Some(c));
    let mut out = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            out.positionals.extend(args[i..].iter().cloned());
            break;
        }
        let (spec, inline) = if let Some(long) = a.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (long, None),
            };
            match find_long(name) {
                Some(s) => (s, inline),
                None => return Err(Stop::Usage(Usage(help))),
            }
        } else if a.len() >= 2
            && a.starts_with('-')
            && !a[1..].starts_with(|c: char| c.is_ascii_digit())
        {
            let mut chars = a[1..].chars();
            let c = chars.next().unwrap_or('-');
            let rest: String = chars.collect();
            match find_short(c) {
                Some(s) => (s, if rest.is_empty() { None } else { Some(rest) }),
                None => return Err(Stop::Usage(Usage(help))),
            }
        } else {
            out.positionals.push(a.clone());
            continue;
        };
        let value = if spec.2 {
            match inline {
                Some(v) => v,
                None if i < args.len() => {
                    i += 1;
                    args[i - 1].clone()
                }
                None => String::new(),
            }
        } else {
            String::new()
        };
        out.flags.entry(spec.0).or_default().push(value);
    }
    if out.has("help") {
        eprint!("{help}");
        return Err(Stop::Code(0));
    }
    if out.has("version") {
        println!("{VERSION}");
        return Err(Stop::Code(0));
    }
    Ok(out)
}
