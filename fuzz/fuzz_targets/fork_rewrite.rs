//! The fork's rewrite of an `opencode export` document (`fork::rewrite_export`) on arbitrary
//! JSON. It must never panic, and when it succeeds:
//! - every `ses_`/`msg_`/`prt_` id of the input (a whole string or an object key) is gone from
//!   the output, replaced consistently (one old id, one new id of the same kind, two old ids
//!   never merged) by a fresh id of opencode's shape; message and part ids keep their order;
//! - the returned id is the new `info.id`, a session id, never the base's;
//! - `info.directory` and `info.title` are what was asked, `parentID` and `share` are gone and
//!   the deny rules headless runs need are in `info.permission`;
//! - everything else is kept: the same shape, the same strings, numbers and keys.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use kugetsu_opencode::fork::{IdGen, ensure_rules, is_object_id, rewrite_export};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const DIRECTORY: &str = "/srv/kugetsu/worktrees/github.com-o-r-14";
const TITLE: &str = "github.com/o/r#14";

fn all_ids(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::String(s) if is_object_id(s) => {
            out.insert(s.clone());
        }
        Value::Array(a) => a.iter().for_each(|x| all_ids(x, out)),
        Value::Object(o) => {
            for (k, x) in o {
                if is_object_id(k) {
                    out.insert(k.clone());
                }
                all_ids(x, out);
            }
        }
        _ => {}
    }
}

/// Records `old -> new` and checks that the mapping stays a bijection between ids of one kind.
fn map_id(old: &str, new: &str, map: &mut BTreeMap<String, String>) {
    assert!(is_object_id(new) && new[..4] == old[..4], "{old} -> {new}");
    let prev = map.insert(old.to_owned(), new.to_owned());
    assert!(prev.is_none_or(|p| p == new), "{old} mapped to two ids");
}

/// Walks the input and output side by side: the same shape, ids mapped, all else equal.
fn same_but_ids(before: &Value, after: &Value, map: &mut BTreeMap<String, String>) {
    match (before, after) {
        (Value::String(b), Value::String(a)) if is_object_id(b) => map_id(b, a, map),
        (Value::Array(b), Value::Array(a)) => {
            assert_eq!(b.len(), a.len());
            b.iter().zip(a).for_each(|(b, a)| same_but_ids(b, a, map));
        }
        (Value::Object(b), Value::Object(a)) => {
            // Keys keep their place (serde_json preserves order here), ids renamed.
            assert_eq!(b.len(), a.len(), "an entry was lost");
            for ((bk, bv), (ak, av)) in b.iter().zip(a) {
                if is_object_id(bk) {
                    map_id(bk, ak, map);
                } else {
                    assert_eq!(bk, ak);
                }
                same_but_ids(bv, av, map);
            }
        }
        (b, a) => assert_eq!(b, a),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = serde_json::from_slice::<Value>(data) else { return };
    let mut doc = input.clone();
    let Ok(new_id) = rewrite_export(&mut doc, DIRECTORY, TITLE, &mut IdGen::new()) else {
        assert_eq!(doc, input, "a refused export is left alone");
        return;
    };
    let old_id = input["info"]["id"].as_str().expect("info.id was a string");
    assert!(new_id.starts_with("ses_") && is_object_id(&new_id), "{new_id}");
    assert_ne!(new_id, old_id, "the fork reuses the base's id");

    let info = doc["info"].as_object().expect("info stays an object");
    assert_eq!(info["id"], new_id.as_str());
    assert_eq!(info["directory"], DIRECTORY);
    assert_eq!(info["title"], TITLE);
    assert!(!info.contains_key("parentID") && !info.contains_key("share"));
    let mut rules = info["permission"].clone();
    assert!(!ensure_rules(&mut rules), "deny rules missing: {}", info["permission"]);

    let mut old_ids = BTreeSet::new();
    all_ids(&input, &mut old_ids);
    let mut new_ids = BTreeSet::new();
    all_ids(&doc, &mut new_ids);
    let left: Vec<_> = old_ids.intersection(&new_ids).collect();
    assert!(left.is_empty(), "ids left behind: {left:?}");

    // Outside `info`'s rewritten fields, the document is the input with ids mapped.
    let mut map = BTreeMap::new();
    let (Value::Object(before), Value::Object(after)) = (&input, &doc) else {
        panic!("the export stays an object");
    };
    assert_eq!(before.len(), after.len());
    for (key, b) in before {
        let a = &after[&map_old_key(key, before, after)];
        if key == "info" {
            // Its rewritten fields aside, and id keys (renamed, and its order is not kept).
            const REWRITTEN: [&str; 5] = ["directory", "title", "parentID", "share", "permission"];
            for (k, bv) in b.as_object().expect("info was an object") {
                if !REWRITTEN.contains(&k.as_str()) && !is_object_id(k) {
                    same_but_ids(bv, &a[k.as_str()], &mut map);
                }
            }
        } else {
            same_but_ids(b, a, &mut map);
        }
    }
    let news: BTreeSet<_> = map.values().collect();
    assert_eq!(news.len(), map.len(), "two ids merged into one");
    for kind in ["msg_", "prt_"] {
        let olds: Vec<_> = map.iter().filter(|(o, _)| o.starts_with(kind)).collect();
        for pair in olds.windows(2) {
            assert!(pair[0].1 < pair[1].1, "order lost: {pair:?}");
        }
    }
});

/// The output key for a top-level input key (ids among top-level keys are renamed in place).
fn map_old_key(
    key: &str,
    before: &serde_json::Map<String, Value>,
    after: &serde_json::Map<String, Value>,
) -> String {
    if !is_object_id(key) {
        return key.to_owned();
    }
    let pos = before.keys().position(|k| k == key).expect("key of before");
    after.keys().nth(pos).expect("same length").clone()
}
