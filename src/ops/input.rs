//! Reading op inputs: f32 data under a luminal shape tracker.

use std::borrow::Cow;

use luminal::op::InputTensor;
use luminal::prelude::*;

/// The concrete dims of an input (dyn dims are already resolved when an op runs).
pub fn dims(tracker: &ShapeTracker) -> Vec<usize> {
    tracker
        .shape()
        .iter()
        .map(|d| d.to_usize().unwrap_or(0))
        .collect()
}

/// The f32 data of an op input, if it holds f32 data.
pub fn f32_data<'a>(input: &'a InputTensor<'a>) -> Option<&'a Vec<f32>> {
    input.borrowed().data.as_any().downcast_ref::<Vec<f32>>()
}

/// The input laid out contiguously in its logical shape. Borrowed when the view is already
/// plain; otherwise copied through luminal's index expressions (slow, but only small views such
/// as "the last row" take this path).
pub fn contiguous<'a>(input: &'a InputTensor<'a>, tracker: &ShapeTracker) -> Cow<'a, [f32]> {
    let data = f32_data(input).map(Vec::as_slice).unwrap_or(&[]);
    let n: usize = dims(tracker).iter().product();
    if tracker.is_contiguous() && !tracker.is_sliced() && !tracker.is_padded() {
        return Cow::Borrowed(&data[..n.min(data.len())]);
    }
    let (index, valid) = (tracker.index_expression(), tracker.valid_expression());
    Cow::Owned(
        (0..n)
            .map(|i| {
                if valid.exec_single_var(i) != 0 {
                    data[index.exec_single_var(i)]
                } else {
                    0.0
                }
            })
            .collect(),
    )
}
