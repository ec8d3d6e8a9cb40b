//! The answers of reads kept with their `ETag`, so that asking again is a conditional request:
//! an unchanged answer is a 304, which GitHub does not count against the rate limit. The loop
//! asks about every live issue's pull request, checks and reviews at each poll; without this,
//! twenty issues polled each minute would spend more than GitHub's 5,000 requests an hour.

use std::collections::HashMap;
use std::sync::Mutex;

/// The most answers kept; past it the oldest go.
const MAX_ENTRIES: usize = 1024;
/// The largest answer kept, in bytes (a larger one is asked for whole each time).
const MAX_KEPT_BODY: usize = 1024 * 1024;

/// One kept answer.
#[derive(Debug, Clone)]
pub(crate) struct Kept {
    pub etag: String,
    pub body: String,
    pub next: Option<String>,
    /// When it was kept (a counter), to drop the oldest first.
    at: u64,
}

/// Answers of GETs by URL, shared by the clients of one long-lived process (the daemon's
/// watcher makes a client per pass). Holds no token: URLs never carry one.
#[derive(Debug, Default)]
pub struct ReadCache {
    inner: Mutex<(HashMap<String, Kept>, u64)>,
}

impl ReadCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The answer kept for `url`.
    pub(crate) fn get(&self, url: &str) -> Option<Kept> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).0.get(url).cloned()
    }

    /// Keeps `body` (with its `etag` and next page) as `url`'s answer.
    pub(crate) fn put(&self, url: &str, etag: &str, body: &str, next: Option<&str>) {
        if body.len() > MAX_KEPT_BODY {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (entries, clock) = &mut *inner;
        *clock += 1;
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(url) {
            let oldest = entries.iter().min_by_key(|(_, k)| k.at).map(|(u, _)| u.clone());
            if let Some(oldest) = oldest {
                entries.remove(&oldest);
            }
        }
        let kept = Kept {
            etag: etag.to_string(),
            body: body.to_string(),
            next: next.map(str::to_string),
            at: *clock,
        };
        entries.insert(url.to_string(), kept);
    }

    /// How many answers are kept.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).0.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_answer_goes_first_and_a_large_one_is_not_kept() {
        let cache = ReadCache::new();
        for n in 0..MAX_ENTRIES {
            cache.put(&format!("u{n}"), "e", "b", None);
        }
        cache.put("u0", "e2", "b2", Some("next"));
        cache.put("new", "e", "b", None);
        assert_eq!(cache.len(), MAX_ENTRIES);
        assert!(cache.get("u1").is_none(), "the oldest went");
        let kept = cache.get("u0").expect("kept again, so not the oldest");
        assert_eq!((kept.etag.as_str(), kept.next.as_deref()), ("e2", Some("next")));
        cache.put("big", "e", &"x".repeat(MAX_KEPT_BODY + 1), None);
        assert!(cache.get("big").is_none());
    }
}
