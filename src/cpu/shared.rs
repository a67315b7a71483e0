//! A slice that several pool threads write to at once, each in a part of its own.

use std::marker::PhantomData;

/// A mutable slice shared by the threads of one [`super::pool::ThreadPool::run`] call.
///
/// Safety rests on the callers: the work split hands every element to exactly one thread,
/// and the slice outlives the call (`run` returns only when all threads are done).
#[derive(Clone, Copy)]
pub(crate) struct SharedMut<'a, T> {
    ptr: *mut T,
    len: usize,
    _life: PhantomData<&'a mut [T]>,
}

// SAFETY: see the type's comment: threads write disjoint elements only.
unsafe impl<T: Send> Send for SharedMut<'_, T> {}
unsafe impl<T: Send> Sync for SharedMut<'_, T> {}

impl<'a, T> SharedMut<'a, T> {
    pub fn new(s: &'a mut [T]) -> Self {
        SharedMut {
            ptr: s.as_mut_ptr(),
            len: s.len(),
            _life: PhantomData,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Elements `start..start + len`.
    ///
    /// # Safety
    /// No other thread may access these elements while the returned slice lives.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice(&self, start: usize, len: usize) -> &'a mut [T] {
        assert!(
            start <= self.len && len <= self.len - start,
            "range out of bounds"
        );
        std::slice::from_raw_parts_mut(self.ptr.add(start), len)
    }

    /// Raw pointer to the first element, for kernels that scatter single values.
    pub fn as_ptr(&self) -> *mut T {
        self.ptr
    }
}
