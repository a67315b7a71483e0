//! What the timing decorators (`instrument`) record per graph node: the shared book of
//! [`NodeRecord`]s, read and cleared between phases, and the kind a stock luminal op is
//! grouped under.

use std::cell::RefCell;
use std::rc::Rc;

pub use crate::node_record::NodeRecord;

/// Records of every profiled node, shared between the decorators and the reader.
pub type ProfileBook = Rc<RefCell<Vec<NodeRecord>>>;

/// The records so far, with the counts then cleared (so the prompt pass and the decode steps
/// can be reported apart).
pub fn take(book: &ProfileBook) -> Vec<NodeRecord> {
    let mut b = book.borrow_mut();
    let records = b.clone();
    for r in b.iter_mut() {
        r.calls = 0;
        r.total_ns = 0;
        r.cost = None;
    }
    records
}
