//! Activation buffers recycled across ops and steps.
//!
//! luminal's executor hands each op's output to the graph and gives an op the inputs it is the
//! last reader of. The parallel ops take their outputs from this pool and return the inputs they
//! own to it, so after the first step or two a decode step allocates no activation memory: the
//! same few buffers circulate through the layers.

use std::sync::Mutex;

use luminal::op::InputTensor;
use luminal::prelude::*;

/// Most buffers kept (a layer has a handful of live activations; more would only hold memory).
const MAX_FREE: usize = 32;

#[derive(Default)]
pub struct BufferPool {
    free: Mutex<Vec<Vec<f32>>>,
}

impl BufferPool {
    /// A zeroed buffer of `len` values, reusing the smallest free one that fits.
    pub fn take(&self, len: usize) -> Vec<f32> {
        let mut buf = self.take_stale(len);
        buf.fill(0.0);
        buf
    }

    /// A buffer of `len` values holding whatever its last user left there (zero where it is
    /// new), for outputs whose every element is written: a prompt's outputs are megabytes
    /// each, and zeroing them first was 1.5% of a 512-token prefill.
    pub fn take_stale(&self, len: usize) -> Vec<f32> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let best = free
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= len)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i);
        let mut buf = best.map_or_else(|| Vec::with_capacity(len), |i| free.swap_remove(i));
        buf.truncate(len);
        buf.resize(len, 0.0);
        buf
    }

    /// Returns a buffer for reuse.
    pub fn give(&self, buf: Vec<f32>) {
        if buf.capacity() == 0 {
            return;
        }
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < MAX_FREE {
            free.push(buf);
        }
    }

    /// Takes back the f32 data of every input the op owns (it was their last reader).
    pub fn recycle(&self, inputs: Vec<(InputTensor, ShapeTracker)>) {
        for (input, _) in inputs {
            if let InputTensor::Owned(mut t) = input {
                if let Some(v) = t.data.as_any_mut().downcast_mut::<Vec<f32>>() {
                    self.give(std::mem::take(v));
                }
            }
        }
    }

    /// Buffers waiting for reuse.
    pub fn free_count(&self) -> usize {
        self.free.lock().map_or(0, |f| f.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_the_smallest_buffer_that_fits_and_zeroes_it() {
        let pool = BufferPool::default();
        let mut big = pool.take(100);
        big[3] = 7.0;
        let small = pool.take(10);
        let (big_ptr, small_ptr) = (big.as_ptr(), small.as_ptr());
        pool.give(big);
        pool.give(small);
        let again = pool.take(8);
        assert_eq!(again.as_ptr(), small_ptr);
        let again_big = pool.take(50);
        assert_eq!(again_big.as_ptr(), big_ptr);
        assert!(again_big.iter().all(|v| *v == 0.0) && again_big.len() == 50);
        assert_eq!(pool.free_count(), 0);
        // A stale buffer keeps its old values; only what it grows by is zeroed.
        let mut stale = again_big;
        stale[1] = 5.0;
        pool.give(stale);
        let grown = pool.take_stale(100);
        assert_eq!((grown[1], grown[60]), (5.0, 0.0));
    }

    #[test]
    fn recycles_owned_inputs_only() {
        let pool = BufferPool::default();
        let kept = Tensor::new(vec![1.0f32; 4]);
        let inputs = vec![
            (
                InputTensor::Owned(Tensor::new(vec![0.0f32; 16])),
                ShapeTracker::new(&[]),
            ),
            (InputTensor::Borrowed(&kept), ShapeTracker::new(&[])),
        ];
        pool.recycle(inputs);
        assert_eq!(pool.free_count(), 1);
        assert_eq!(
            kept.data.as_any().downcast_ref::<Vec<f32>>().unwrap().len(),
            4
        );
    }
}
