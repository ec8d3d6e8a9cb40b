//! Turns driven over HTTP: `POST /api/session/ID/prompt {text}` starts one in the serve and
//! answers at once; `POST /api/experimental/session/ID/wait` answers 204 once the session is
//! idle. Unlike a `run`, such a turn waits on a permission ask: `GET /api/session/ID/permission`
//! lists it, `POST /api/session/ID/permission/PER/reply {decision: once|always|reject, message?}`
//! answers it (an interrupt ends the wait too).

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::serve::Reply;
use super::*;

/// A permission request waiting for its reply.
struct Pending {
    session: String,
    request: Value,
    /// `(decision, message)` once replied.
    reply: Option<(String, Option<String>)>,
}

static PENDING: Mutex<BTreeMap<String, Pending>> = Mutex::new(BTreeMap::new());

/// `POST /api/session/ID/prompt`: the turn starts in the background.
pub(super) fn prompt(s: &Session, body: &Value) -> Res<Reply> {
    let text = body["text"].as_str().unwrap_or_default().to_owned();
    let id = with_store(|store| Ok(new_id(store, "msg")))?;
    let req = json!({"session": s.id, "text": text, "directory": s.directory, "http": true});
    // Active before the answer, so a `wait` right after it waits for this turn.
    turn::mark_active(&s.id);
    std::thread::spawn(move || turn::run_detached(&req));
    let data = json!({"id": id, "sessionID": s.id, "time": {"created": now_ms()},
                      "type": "user", "payload": {"text": text}, "delivery": "steer"});
    Ok(Reply(200, json!({ "data": data }).to_string(), ""))
}

/// `POST /api/experimental/session/ID/wait`: 204 once no turn of `id` runs.
pub(super) fn wait(id: &str) -> Reply {
    while turn::active().iter().any(|a| a == id) {
        std::thread::sleep(Duration::from_millis(10));
    }
    Reply(204, String::new(), "")
}

/// `GET /api/session/ID/permission`: its requests waiting for a reply.
pub(super) fn list(id: &str) -> Reply {
    let pending: Vec<Value> = PENDING
        .lock()
        .map(|p| {
            p.values()
                .filter(|r| r.session == id && r.reply.is_none())
                .map(|r| r.request.clone())
                .collect()
        })
        .unwrap_or_default();
    Reply(200, json!({ "data": pending }).to_string(), "")
}

/// `POST /api/session/ID/permission/PER/reply`.
pub(super) fn reply(id: &str, per: &str, body: &Value) -> Reply {
    let decision = body["decision"].as_str().unwrap_or("reject").to_owned();
    let message = body["message"].as_str().map(str::to_owned);
    let found = PENDING.lock().ok().is_some_and(|mut p| match p.get_mut(per) {
        Some(r) if r.session == id && r.reply.is_none() => {
            r.reply = Some((decision, message));
            true
        }
        _ => false,
    });
    if found {
        return Reply(204, String::new(), "");
    }
    let body = json!({"_tag": "PermissionNotFoundError", "requestID": per,
                      "message": format!("Permission request not found: {per}")});
    Reply(404, body.to_string(), "")
}

/// Asks for `action` on `resource` in `session`'s turn (message `message`), and waits for the
/// reply: `Some((decision, message))`, or `None` if the turn is interrupted first.
pub(super) fn ask(
    session: &str,
    message: &str,
    action: &str,
    resource: &str,
    interrupted: &AtomicBool,
) -> Option<(String, Option<String>)> {
    let per = with_store(|store| Ok(new_id(store, "per"))).ok()?;
    let pattern = format!("{} *", resource.split_whitespace().next().unwrap_or(resource));
    let request = json!({"id": per, "sessionID": session, "action": action,
                         "resources": [resource], "save": [pattern],
                         "source": {"type": "tool", "messageID": message, "id": "call_1"}});
    if let Ok(mut p) = PENDING.lock() {
        p.insert(per.clone(), Pending { session: session.to_owned(), request, reply: None });
    }
    loop {
        let reply = PENDING.lock().ok().and_then(|p| p.get(&per).and_then(|r| r.reply.clone()));
        if reply.is_some() || interrupted.load(Ordering::SeqCst) {
            if let Ok(mut p) = PENDING.lock() {
                p.remove(&per);
            }
            return reply;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
