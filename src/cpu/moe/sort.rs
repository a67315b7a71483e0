//! ggml's `argsort` (descending) on the CPU, tie for tie: the order libstdc++'s `std::sort` leaves.
//!
//! llama.cpp picks a token's experts with `ggml_argsort_top_k`: `std::sort` of the expert indices
//! by probability, descending, then the first `k`. `std::sort` is not stable, so when two experts
//! have bit-identical probabilities the one it puts first depends on the algorithm: introsort
//! (median-of-three quicksort down to runs of 16, heapsort past a depth limit of `2 log2 n`), then
//! one insertion sort over everything. This is that algorithm written for our index arrays, so
//! that our choice on a tie is llama.cpp's (it matters: a swapped expert changes the output).
//! For up to 16 experts it is a plain insertion sort, i.e. stable.

/// Runs of this length or shorter are left to the final insertion sort (`_S_threshold`).
const THRESHOLD: usize = 16;

/// Sorts `idx` so that `keys[idx[0]] >= keys[idx[1]] >= ...`, breaking ties exactly as
/// `std::sort(idx, idx + n, [&](a, b) { return keys[a] > keys[b]; })` in libstdc++.
///
/// NaN keys sort as negative infinity (in llama.cpp they are undefined behaviour); every index
/// must be inside `keys`.
pub fn argsort_desc(keys: &[f32], idx: &mut [u32]) {
    let key = |i: u32| {
        let k = keys[i as usize];
        if k.is_nan() {
            f32::NEG_INFINITY
        } else {
            k
        }
    };
    let mut sorter = Sorter {
        v: idx,
        before: |a: u32, b: u32| key(a) > key(b),
    };
    let n = sorter.v.len();
    if n == 0 {
        return;
    }
    sorter.introsort(0, n, 2 * n.ilog2() as usize);
    sorter.final_insertion_sort(n);
}

/// The index array and the strict order (`before(a, b)`: a comes first).
struct Sorter<'a, F: Fn(u32, u32) -> bool> {
    v: &'a mut [u32],
    before: F,
}

impl<F: Fn(u32, u32) -> bool> Sorter<'_, F> {
    fn less(&self, i: usize, j: usize) -> bool {
        (self.before)(self.v[i], self.v[j])
    }

    /// `__introsort_loop`: partitions until runs are short, recursing on the right part.
    fn introsort(&mut self, first: usize, mut last: usize, mut depth: usize) {
        while last - first > THRESHOLD {
            if depth == 0 {
                self.heap_sort(first, last);
                return;
            }
            depth -= 1;
            let cut = self.partition_pivot(first, last);
            self.introsort(cut, last, depth);
            last = cut;
        }
    }

    /// `__unguarded_partition_pivot`: the median of (first + 1, middle, last - 1) moved to
    /// `first`, then a Hoare partition of the rest around it.
    fn partition_pivot(&mut self, first: usize, last: usize) -> usize {
        let mid = first + (last - first) / 2;
        self.median_to_first(first, first + 1, mid, last - 1);
        let (mut lo, mut hi) = (first + 1, last);
        loop {
            while self.less(lo, first) {
                lo += 1;
            }
            hi -= 1;
            while self.less(first, hi) {
                hi -= 1;
            }
            if lo >= hi {
                return lo;
            }
            self.v.swap(lo, hi);
            lo += 1;
        }
    }

    /// `__move_median_to_first`.
    fn median_to_first(&mut self, result: usize, a: usize, b: usize, c: usize) {
        let median = if self.less(a, b) {
            if self.less(b, c) {
                b
            } else if self.less(a, c) {
                c
            } else {
                a
            }
        } else if self.less(a, c) {
            a
        } else if self.less(b, c) {
            c
        } else {
            b
        };
        self.v.swap(result, median);
    }

    /// `__final_insertion_sort`: a guarded insertion sort of the first 16, then unguarded ones
    /// (the partitions guarantee a smaller element somewhere before).
    fn final_insertion_sort(&mut self, n: usize) {
        if n > THRESHOLD {
            self.insertion_sort(0, THRESHOLD);
            for i in THRESHOLD..n {
                self.linear_insert(i);
            }
        } else {
            self.insertion_sort(0, n);
        }
    }

    /// `__insertion_sort`: an element that beats the first goes straight to the front.
    fn insertion_sort(&mut self, first: usize, last: usize) {
        for i in first + 1..last {
            if self.less(i, first) {
                self.v[first..=i].rotate_right(1);
            } else {
                self.linear_insert(i);
            }
        }
    }

    /// `__unguarded_linear_insert`: moves `v[last]` left past every element it comes before.
    fn linear_insert(&mut self, mut last: usize) {
        let val = self.v[last];
        while last > 0 && (self.before)(val, self.v[last - 1]) {
            self.v[last] = self.v[last - 1];
            last -= 1;
        }
        self.v[last] = val;
    }

    /// `__partial_sort(first, last, last)`: `__make_heap`, then `__sort_heap`.
    fn heap_sort(&mut self, first: usize, last: usize) {
        let len = last - first;
        if len >= 2 {
            let mut parent = (len - 2) / 2;
            loop {
                let value = self.v[first + parent];
                self.adjust_heap(first, parent, len, value);
                if parent == 0 {
                    break;
                }
                parent -= 1;
            }
        }
        let mut end = last;
        while end - first > 1 {
            end -= 1;
            // `__pop_heap(first, end, end)`.
            let value = self.v[end];
            self.v[end] = self.v[first];
            self.adjust_heap(first, 0, end - first, value);
        }
    }

    /// `__adjust_heap`: sifts the hole at `hole` down to a leaf, then pushes `value` up.
    fn adjust_heap(&mut self, first: usize, mut hole: usize, len: usize, value: u32) {
        let top = hole;
        let mut child = hole;
        while child < (len - 1) / 2 {
            child = 2 * (child + 1);
            if self.less(first + child, first + child - 1) {
                child -= 1;
            }
            self.v[first + hole] = self.v[first + child];
            hole = child;
        }
        if len.is_multiple_of(2) && child == (len - 2) / 2 {
            child = 2 * (child + 1);
            self.v[first + hole] = self.v[first + child - 1];
            hole = child - 1;
        }
        // `__push_heap(first, hole, top, value)`.
        let mut parent = hole.wrapping_sub(1) / 2;
        while hole > top && (self.before)(self.v[first + parent], value) {
            self.v[first + hole] = self.v[first + parent];
            hole = parent;
            parent = hole.wrapping_sub(1) / 2;
        }
        self.v[first + hole] = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(keys: &[f32]) -> Vec<u32> {
        let mut idx: Vec<u32> = (0..keys.len() as u32).collect();
        argsort_desc(keys, &mut idx);
        idx
    }

    #[test]
    fn sorts_descending_without_ties() {
        for n in [0usize, 1, 2, 7, 16, 17, 33, 128, 300] {
            let keys: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1013) as f32 * 0.5).collect();
            let idx = sorted(&keys);
            let mut want: Vec<u32> = (0..n as u32).collect();
            want.sort_by(|&a, &b| keys[b as usize].total_cmp(&keys[a as usize]));
            assert_eq!(idx, want, "n={n}");
        }
    }

    #[test]
    fn up_to_sixteen_keys_ties_keep_index_order() {
        let keys = [0.5, 0.25, 0.5, 0.125, 0.25, 0.5, 0.0, 0.25];
        assert_eq!(sorted(&keys), vec![0, 2, 5, 1, 4, 7, 3, 6]);
    }

    /// Vectors from libstdc++ itself (`tools/libstdcxx_argsort.cpp`): sizes above 16 with many
    /// ties, where introsort is not stable; the heap order is checked on its own because the
    /// depth limit that switches to it is never reached by these inputs.
    #[test]
    fn ties_fall_as_in_libstdcxx() {
        let cases: serde_json::Value = serde_json::from_str(include_str!(
            "../../../tests/fixtures/moe/libstdcxx_argsort.json"
        ))
        .unwrap();
        let list = |v: &serde_json::Value| -> Vec<f64> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        };
        for case in cases.as_array().unwrap() {
            let keys: Vec<f32> = list(&case["keys"]).iter().map(|&k| k as f32).collect();
            let want: Vec<u32> = list(&case["sort"]).iter().map(|&i| i as u32).collect();
            assert_eq!(sorted(&keys), want, "std::sort of {} keys", keys.len());
            let mut heap: Vec<u32> = (0..keys.len() as u32).collect();
            let mut sorter = Sorter {
                v: &mut heap,
                before: |a: u32, b: u32| keys[a as usize] > keys[b as usize],
            };
            sorter.heap_sort(0, keys.len());
            let want: Vec<u32> = list(&case["heap"]).iter().map(|&i| i as u32).collect();
            assert_eq!(heap, want, "heap sort of {} keys", keys.len());
        }
    }

    #[test]
    fn nan_sorts_last_and_nothing_panics() {
        let keys = [0.1, f32::NAN, 0.3, f32::NAN, 0.2];
        assert_eq!(&sorted(&keys)[..3], &[2, 4, 0]);
        let many: Vec<f32> = (0..200)
            .map(|i| if i % 3 == 0 { f32::NAN } else { 1.0 })
            .collect();
        let idx = sorted(&many);
        assert!(idx[..133].iter().all(|&i| i % 3 != 0));
    }
}
