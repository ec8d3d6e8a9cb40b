//! The state file types on arbitrary bytes: parsing never panics, and whatever parses writes
//! back as JSON that parses to the same value (unknown fields kept, nothing lost).
#![no_main]

use kugetsu_core::notify::Notification;
use kugetsu_core::{Index, QueueItem, SessionFile};
use libfuzzer_sys::fuzz_target;

fn round_trip<T>(data: &[u8])
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    let Ok(value) = serde_json::from_slice::<T>(data) else { return };
    let bytes = serde_json::to_vec(&value).expect("a parsed state value serializes");
    let again: T = serde_json::from_slice(&bytes).expect("what was written parses");
    assert_eq!(again, value);
}

fuzz_target!(|data: &[u8]| {
    round_trip::<Index>(data);
    round_trip::<SessionFile>(data);
    round_trip::<QueueItem>(data);
    round_trip::<Notification>(data);
});
