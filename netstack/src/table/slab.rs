//! Entries at stable indices, with a free list: what an [`super::Index`]
//! slot names.

use alloc::vec::Vec;

/// Entries at stable indices, with a free list.
///
/// The entries are reserved at construction but written only as they are
/// first handed out (low indices first), so an idle table's memory stays
/// untouched: a 16,384-flow table costs no resident memory until flows
/// come (the agent's idle RSS, issue #2).
#[derive(Debug, Clone)]
pub(crate) struct Slab<T> {
    /// Entries handed out so far; never grows past `capacity`, so it never
    /// reallocates.
    entries: Vec<Option<T>>,
    /// Removed indices, reused last-removed first, before fresh ones.
    free: Vec<u32>,
    capacity: usize,
}

impl<T> Slab<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        Slab { entries: Vec::with_capacity(capacity), free: Vec::with_capacity(capacity), capacity }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes held by the entries and the free list.
    pub(crate) fn bytes(&self) -> usize {
        self.capacity * (core::mem::size_of::<Option<T>>() + core::mem::size_of::<u32>())
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len() - self.free.len()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.free.is_empty() && self.entries.len() >= self.capacity
    }

    pub(crate) fn insert(&mut self, value: T) -> Option<u32> {
        if let Some(at) = self.free.pop() {
            self.entries[at as usize] = Some(value);
            return Some(at);
        }
        if self.entries.len() >= self.capacity {
            return None;
        }
        self.entries.push(Some(value));
        Some((self.entries.len() - 1) as u32)
    }

    pub(crate) fn remove(&mut self, at: u32) -> Option<T> {
        let value = self.entries.get_mut(at as usize)?.take()?;
        self.free.push(at);
        Some(value)
    }

    pub(crate) fn get(&self, at: u32) -> Option<&T> {
        self.entries.get(at as usize)?.as_ref()
    }

    pub(crate) fn get_mut(&mut self, at: u32) -> Option<&mut T> {
        self.entries.get_mut(at as usize)?.as_mut()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.entries.iter().enumerate().filter_map(|(i, e)| e.as_ref().map(|e| (i as u32, e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slab_reuses_freed_slots_and_reports_full() {
        let mut slab = Slab::new(2);
        let a = slab.insert('a').unwrap();
        let _b = slab.insert('b').unwrap();
        assert!(slab.is_full());
        assert_eq!(slab.insert('c'), None);
        assert_eq!(slab.remove(a), Some('a'));
        assert_eq!(slab.insert('d'), Some(a));
    }

    /// Indices come as the eager free list gave them: fresh ones in order,
    /// removed ones first, the last removed first of all.
    #[test]
    fn slab_hands_out_low_indices_first_and_reuses_the_last_removed() {
        let mut slab = Slab::new(4);
        assert_eq!((slab.len(), slab.capacity(), slab.is_full()), (0, 4, false));
        assert_eq!([slab.insert(0), slab.insert(1), slab.insert(2)], [Some(0), Some(1), Some(2)]);
        assert_eq!(slab.remove(0), Some(0));
        assert_eq!(slab.remove(2), Some(2));
        assert_eq!(slab.remove(2), None, "removed twice");
        assert_eq!(slab.get(3), None, "never handed out");
        assert_eq!(slab.insert(20), Some(2));
        assert_eq!(slab.insert(10), Some(0));
        assert_eq!(slab.insert(30), Some(3));
        assert!(slab.is_full());
        assert_eq!(slab.insert(40), None);
        assert_eq!(slab.len(), 4);
        let all: Vec<_> = slab.iter().map(|(i, v)| (i, *v)).collect();
        assert_eq!(all, [(0, 10), (1, 1), (2, 20), (3, 30)]);
    }
}
