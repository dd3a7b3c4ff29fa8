//! Echo identifiers of the endpoint's own: handed out round-robin, with a
//! bounded search, so a full identifier space is a refusal and never a spin.

/// Hands out 16-bit identifiers (never 0).
#[derive(Debug, Clone)]
pub(super) struct IdAllocator {
    next: u16,
}

impl IdAllocator {
    pub(super) fn new() -> IdAllocator {
        IdAllocator { next: 1 }
    }

    /// The first identifier from the last one given on that `taken` says is
    /// free, looking at no more than `tries` candidates (at most all 65,535);
    /// None when none of them is.
    pub(super) fn allocate(&mut self, tries: usize, taken: impl Fn(u16) -> bool) -> Option<u16> {
        let mut id = self.next;
        for _ in 0..tries.min(65_535) {
            if id == 0 {
                id = 1;
            }
            if !taken(id) {
                self.next = id.wrapping_add(1);
                return Some(id);
            }
            id = id.wrapping_add(1);
        }
        None
    }
}
