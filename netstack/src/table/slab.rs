//! Entries at stable indices, with a free list: what an [`super::Index`]
//! slot names.

use alloc::vec::Vec;

/// Entries at stable indices, with a free list.
#[derive(Debug, Clone)]
pub(crate) struct Slab<T> {
    entries: Vec<Option<T>>,
    free: Vec<u32>,
}

impl<T> Slab<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        Slab {
            entries: (0..capacity).map(|_| None).collect(),
            // Popped from the end: hand out low indices first.
            free: (0..capacity as u32).rev().collect(),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// Bytes held by the entries and the free list.
    pub(crate) fn bytes(&self) -> usize {
        self.entries.len() * (core::mem::size_of::<Option<T>>() + core::mem::size_of::<u32>())
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len() - self.free.len()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.free.is_empty()
    }

    pub(crate) fn insert(&mut self, value: T) -> Option<u32> {
        let at = self.free.pop()?;
        self.entries[at as usize] = Some(value);
        Some(at)
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
}
