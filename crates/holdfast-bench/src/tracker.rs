//! Delivery accounting: which sequence numbers of each publisher a subscriber has seen, how many
//! arrived twice or out of order, and which acknowledged messages never arrived.

/// A growable set of small integers (sequence numbers start at 0 and are dense).
#[derive(Debug, Clone, Default)]
pub struct BitSet {
    words: Vec<u64>,
    len: u64,
}

impl BitSet {
    pub fn new() -> BitSet {
        BitSet::default()
    }

    /// A set holding `0..n`.
    pub fn full(n: u64) -> BitSet {
        let mut set = BitSet::new();
        let words = usize::try_from(n.div_ceil(64)).expect("fits memory");
        set.words = vec![u64::MAX; words];
        let tail = n % 64;
        if tail > 0 {
            set.words[words - 1] = (1u64 << tail) - 1;
        }
        set.len = n;
        set
    }

    /// Adds `i`; true if it was not there yet. Grows by doubling, so inserting dense sequence
    /// numbers allocates O(log n) times.
    #[inline]
    pub fn insert(&mut self, i: u64) -> bool {
        let word = (i / 64) as usize;
        if word >= self.words.len() {
            let want = (word + 1).max(self.words.len() * 2).max(16);
            self.words.resize(want, 0);
        }
        let bit = 1u64 << (i % 64);
        let fresh = self.words[word] & bit == 0;
        self.words[word] |= bit;
        self.len += u64::from(fresh);
        fresh
    }

    #[inline]
    pub fn contains(&self, i: u64) -> bool {
        self.words
            .get((i / 64) as usize)
            .is_some_and(|w| w & (1u64 << (i % 64)) != 0)
    }

    /// How many members.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many members of `self` are not in `other`.
    pub fn count_missing_from(&self, other: &BitSet) -> u64 {
        self.words
            .iter()
            .enumerate()
            .map(|(i, w)| u64::from((w & !other.words.get(i).copied().unwrap_or(0)).count_ones()))
            .sum()
    }
}

/// How one arrival relates to what came before from the same publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// First arrival, in order (gaps from lost messages allowed).
    InOrder,
    /// First arrival, but after a higher sequence number of the same publisher.
    Reordered,
    /// Seen before.
    Duplicate,
}

/// What one subscriber received from one publisher.
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    seen: BitSet,
    /// One past the highest sequence number seen.
    next: u64,
    pub duplicates: u64,
    pub reordered: u64,
}

impl SeqTracker {
    #[inline]
    pub fn record(&mut self, seq: u64) -> Arrival {
        if !self.seen.insert(seq) {
            self.duplicates += 1;
            Arrival::Duplicate
        } else if seq < self.next {
            self.reordered += 1;
            Arrival::Reordered
        } else {
            self.next = seq + 1;
            Arrival::InOrder
        }
    }

    /// Distinct messages received.
    pub fn received(&self) -> u64 {
        self.seen.len()
    }

    /// Messages in `expected` (acknowledged, or sent at QoS 0) that never arrived.
    pub fn lost(&self, expected: &BitSet) -> u64 {
        expected.count_missing_from(&self.seen)
    }

    pub fn has_seen(&self, seq: u64) -> bool {
        self.seen.contains(seq)
    }
}

/// Why an arrival could not be accounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Foreign {
    /// A publisher id this run does not have.
    Publisher(u32),
    /// A sequence number no publisher of this run can have reached.
    Seq(u64),
}

/// Everything one subscriber received, per publisher.
#[derive(Debug, Clone)]
pub struct Accounting {
    pub per_publisher: Vec<SeqTracker>,
}

/// Sequence numbers above this are treated as corrupt rather than grown into.
pub const MAX_SEQ: u64 = 1 << 34;

impl Accounting {
    pub fn new(publishers: u32) -> Accounting {
        Accounting {
            per_publisher: vec![SeqTracker::default(); publishers as usize],
        }
    }

    #[inline]
    pub fn record(&mut self, publisher: u32, seq: u64) -> Result<Arrival, Foreign> {
        if seq > MAX_SEQ {
            return Err(Foreign::Seq(seq));
        }
        self.per_publisher
            .get_mut(publisher as usize)
            .map(|t| t.record(seq))
            .ok_or(Foreign::Publisher(publisher))
    }

    /// Distinct messages received from all publishers.
    pub fn received(&self) -> u64 {
        self.per_publisher.iter().map(SeqTracker::received).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitset_insert_contains_len() {
        let mut s = BitSet::new();
        assert!(s.is_empty());
        assert!(s.insert(0));
        assert!(s.insert(63));
        assert!(s.insert(64));
        assert!(s.insert(100_000));
        assert!(!s.insert(64), "second insert");
        assert_eq!(s.len(), 4);
        assert!(s.contains(100_000) && s.contains(63) && !s.contains(62));
        assert!(!s.contains(10_000_000), "beyond the words");
    }

    #[test]
    fn bitset_full_and_difference() {
        for n in [0, 1, 63, 64, 65, 1000] {
            let full = BitSet::full(n);
            assert_eq!(full.len(), n);
            assert!(n == 0 || full.contains(n - 1));
            assert!(!full.contains(n));
            assert_eq!(full.count_missing_from(&BitSet::new()), n);
            assert_eq!(full.count_missing_from(&full), 0);
        }
        let full = BitSet::full(200);
        let mut some = BitSet::new();
        for i in (0..200).step_by(3) {
            some.insert(i);
        }
        some.insert(5000); // not in `full`: irrelevant to what `full` misses
        assert_eq!(full.count_missing_from(&some), 200 - 67);
        assert_eq!(some.count_missing_from(&full), 1);
    }

    #[test]
    fn in_order_arrivals_with_gaps_are_neither_reordered_nor_duplicated() {
        let mut t = SeqTracker::default();
        for seq in [0, 1, 2, 5, 6, 9] {
            assert_eq!(t.record(seq), Arrival::InOrder);
        }
        assert_eq!((t.received(), t.duplicates, t.reordered), (6, 0, 0));
        assert_eq!(t.lost(&BitSet::full(10)), 4, "3, 4, 7, 8");
    }

    #[test]
    fn late_first_arrival_is_reordered_and_repeat_is_duplicate() {
        let mut t = SeqTracker::default();
        assert_eq!(t.record(0), Arrival::InOrder);
        assert_eq!(t.record(2), Arrival::InOrder);
        assert_eq!(t.record(1), Arrival::Reordered);
        assert_eq!(t.record(1), Arrival::Duplicate);
        assert_eq!(t.record(2), Arrival::Duplicate);
        assert_eq!(t.record(3), Arrival::InOrder);
        assert_eq!((t.received(), t.duplicates, t.reordered), (4, 2, 1));
        assert_eq!(t.lost(&BitSet::full(4)), 0);
    }

    #[test]
    fn lost_counts_only_acknowledged_messages() {
        let mut acked = BitSet::new();
        for seq in [0, 1, 2, 3] {
            acked.insert(seq);
        }
        let mut t = SeqTracker::default();
        t.record(0);
        t.record(3);
        t.record(4); // delivered though its ack never came: not lost, not counted against
        assert_eq!(t.lost(&acked), 2);
        assert!(t.has_seen(4) && !t.has_seen(1));
    }

    #[test]
    fn accounting_rejects_foreign_publishers_and_absurd_sequences() {
        let mut a = Accounting::new(2);
        assert_eq!(a.record(1, 0), Ok(Arrival::InOrder));
        assert_eq!(a.record(0, 0), Ok(Arrival::InOrder));
        assert_eq!(a.record(1, 0), Ok(Arrival::Duplicate));
        assert_eq!(a.record(2, 0), Err(Foreign::Publisher(2)));
        assert_eq!(a.record(0, u64::MAX), Err(Foreign::Seq(u64::MAX)));
        assert_eq!(a.received(), 2);
        assert_eq!(a.per_publisher[1].duplicates, 1);
    }
}
