//! One generation for the controller's observed state: every mutable access
//! to a [`Tracked`] value bumps it, so "has anything the status shows
//! changed?" is answered by comparing two numbers, with no counter kept by
//! hand at each mutation.
//!
//! A `&mut` access that ends up changing nothing still bumps: the snapshot is
//! then rebuilt once for nothing, which is cheap; missing a change is not.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The shared counter. Clones count together.
#[derive(Debug, Clone, Default)]
pub(crate) struct Generation(Arc<AtomicU64>);

impl Generation {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Something changed outside a [`Tracked`] value.
    pub fn bump(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn track<T>(&self, value: T) -> Tracked<T> {
        Tracked {
            value,
            generation: self.clone(),
        }
    }
}

/// A value whose every mutable access bumps its [`Generation`].
#[derive(Debug)]
pub(crate) struct Tracked<T> {
    value: T,
    generation: Generation,
}

impl<T> Deref for Tracked<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> DerefMut for Tracked<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.generation.bump();
        &mut self.value
    }
}

impl<'a, T> IntoIterator for &'a Tracked<T>
where
    &'a T: IntoIterator,
{
    type Item = <&'a T as IntoIterator>::Item;
    type IntoIter = <&'a T as IntoIterator>::IntoIter;
    fn into_iter(self) -> Self::IntoIter {
        self.value.into_iter()
    }
}

impl<'a, T> IntoIterator for &'a mut Tracked<T>
where
    &'a mut T: IntoIterator,
{
    type Item = <&'a mut T as IntoIterator>::Item;
    type IntoIter = <&'a mut T as IntoIterator>::IntoIter;
    fn into_iter(self) -> Self::IntoIter {
        self.generation.bump();
        (&mut self.value).into_iter()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn reads_keep_and_writes_bump_the_generation() {
        let g = Generation::default();
        let mut a = g.track(BTreeMap::<u32, u32>::new());
        let mut b = g.track(0u32);
        a.insert(1, 1);
        assert_eq!(g.get(), 1);
        *b += 1;
        assert_eq!(g.get(), 2);
        let _ = a.get(&1);
        let _ = a.values().count();
        for _ in &a {}
        assert_eq!(*b, 1);
        assert_eq!(g.get(), 2, "reads don't bump");
        for (_, v) in &mut a {
            *v += 1;
        }
        if let Some(v) = a.get_mut(&1) {
            *v += 1;
        }
        assert_eq!(g.get(), 4);
        assert_eq!(a[&1], 3);
    }
}
