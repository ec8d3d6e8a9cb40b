//! Races between real processes: claimers, enqueuers and slot holders.
#![cfg(feature = "test-helper")]
#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::HashSet;
use std::time::Duration;

use common::{helper, lines, read_num, wait_until};
use kugetsu_core::queue::{AgentSlots, NewTask, TaskQueue};
use kugetsu_queue::{FileQueue, FileSlots};

#[test]
fn racing_claimer_processes_never_get_the_same_item() {
    let env = common::env();
    let q = FileQueue::new(&env.state);
    for i in 0..120 {
        q.enqueue(NewTask {
            message: format!("t{i}"),
            issue_ref: None,
            options: Default::default(),
        })
        .unwrap();
    }
    let root = env.state.root().to_str().unwrap().to_string();
    let outs: Vec<_> = (0..6).map(|i| env.record.join(format!("claims-{i}"))).collect();
    let children: Vec<_> = outs
        .iter()
        .map(|out| helper(&["claim", &root, out.to_str().unwrap()]).spawn().unwrap())
        .collect();
    for mut c in children {
        assert!(common::wait_exit(&mut c, Duration::from_secs(60)).success());
    }
    let all: Vec<String> = outs.iter().flat_map(|o| lines(o)).collect();
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(all.len(), 120, "every item claimed exactly once overall");
    assert_eq!(unique.len(), 120, "no item claimed twice");
    assert!(q.list().unwrap().items.iter().all(|i| i.attempts == 1));
}

#[test]
fn racing_enqueuer_processes_get_unique_ids_and_lose_nothing() {
    let env = common::env();
    let root = env.state.root().to_str().unwrap().to_string();
    let children: Vec<_> =
        (0..4).map(|_| helper(&["enqueue", &root, "25", "hello"]).spawn().unwrap()).collect();
    for mut c in children {
        assert!(common::wait_exit(&mut c, Duration::from_secs(60)).success());
    }
    let items = FileQueue::new(&env.state).list().unwrap();
    assert!(items.problems.is_empty(), "{:?}", items.problems);
    let ids: HashSet<String> = items.items.into_iter().map(|i| i.id).collect();
    assert_eq!(ids.len(), 100);
}

#[test]
fn sixty_four_processes_racing_for_three_slots_never_exceed_three() {
    let env = common::env();
    let root = env.state.root().to_str().unwrap().to_string();
    let record = env.record.to_str().unwrap().to_string();
    let children: Vec<_> = (0..64)
        .map(|_| helper(&["hold-slot", &root, "3", "200", &record]).spawn().unwrap())
        .collect();
    for mut c in children {
        assert!(common::wait_exit(&mut c, Duration::from_secs(120)).success());
    }
    let max = read_num(&env.record.join("slot.max"));
    // Never more than three, and three at once: sixty-four contenders for holds of 200 ms
    // fill every slot.
    assert_eq!(max, 3, "max concurrent holders");
    let done = lines(&env.record.join("slot.done"));
    assert_eq!(done.len(), 64, "every process got a slot in the end");
    assert!(done.iter().all(|i| ["0", "1", "2"].contains(&i.as_str())), "{done:?}");
    assert_eq!(read_num(&env.record.join("slot.count")), 0);
    assert_eq!(FileSlots::new(&env.state).active().unwrap(), 0);
}

#[test]
fn a_killed_slot_holder_frees_its_slot() {
    let env = common::env();
    let root = env.state.root().to_str().unwrap().to_string();
    let record = env.record.to_str().unwrap().to_string();
    let mut holder = helper(&["hold-slot", &root, "1", "60000", &record]).spawn().unwrap();
    let slots = FileSlots::new(&env.state);
    assert!(wait_until(Duration::from_secs(20), || read_num(&env.record.join("slot.count")) == 1));
    assert_eq!(slots.active().unwrap(), 1);
    assert!(slots.try_acquire(1).unwrap().is_none());
    common::kill(&holder, rustix::process::Signal::KILL);
    common::wait_exit(&mut holder, Duration::from_secs(10));
    assert_eq!(slots.active().unwrap(), 0);
    assert!(slots.try_acquire(1).unwrap().is_some());
}
