//! Graph-rewriting helpers shared by the fusion passes.
//!
//! A fusion pass recognises a region of the compiled graph (say, the eight primitive ops of an
//! RMSNorm), adds one op that computes the same thing from the region's inputs, moves the region's
//! consumers over to it and lets [`replace`] delete whatever became dead. Regions are recognised
//! by walking back from an anchor the pass can be sure of (a bound norm weight, our attention op),
//! never by node order.

use luminal::op::{Constant, ConstantValue, Operator};
use luminal::prelude::*;
use petgraph::visit::EdgeRef;
use petgraph::Direction;

use super::weight::WeightData;

/// A data input of a node: source node, its output index, and the view it is read through.
pub type Source = (NodeIndex, u8, ShapeTracker);

/// The op at `node` as a `T`, if it is one.
pub fn op_as<T: 'static>(graph: &Graph, node: NodeIndex) -> Option<&T> {
    graph.graph.node_weight(node)?.as_any().downcast_ref::<T>()
}

/// Whether the op at `node` is a `T`.
pub fn is_op<T: 'static>(graph: &Graph, node: NodeIndex) -> bool {
    op_as::<T>(graph, node).is_some()
}

/// The data inputs of `node`, in input order.
pub fn sources(graph: &Graph, node: NodeIndex) -> Vec<Source> {
    graph.get_sources(node)
}

/// The single data input of `node`, if it has exactly one.
pub fn single_source(graph: &Graph, node: NodeIndex) -> Option<Source> {
    match &sources(graph, node)[..] {
        [s] => Some(*s),
        _ => None,
    }
}

/// Nodes that read `node`'s outputs.
pub fn consumers(graph: &Graph, node: NodeIndex) -> Vec<NodeIndex> {
    graph
        .graph
        .edges_directed(node, Direction::Outgoing)
        .map(|e| e.target())
        .collect()
}

/// The value of a float `Constant` node.
pub fn constant_value(graph: &Graph, node: NodeIndex) -> Option<f32> {
    match op_as::<Constant>(graph, node)?.0 {
        ConstantValue::Float(v) => Some(v),
        ConstantValue::Expression(_) => None,
    }
}

/// The f32 data bound to `node` (a 1-D weight such as a norm), if any.
pub fn bound_vector(graph: &Graph, node: NodeIndex) -> Option<&Vec<f32>> {
    graph
        .tensors
        .get(&(node, 0))?
        .data
        .as_any()
        .downcast_ref::<Vec<f32>>()
}

/// The weight matrix bound to `node`, if any.
pub fn bound_matrix(graph: &Graph, node: NodeIndex) -> Option<&WeightData> {
    graph
        .tensors
        .get(&(node, 0))?
        .data
        .as_any()
        .downcast_ref::<WeightData>()
}

/// Adds `op` reading `inputs`, hands it every consumer and reference of `old_output`, and removes
/// the nodes that no longer feed anything (the fused region). Returns the new node.
pub fn replace<T: ToIdsMut>(
    graph: &mut Graph,
    remap: &mut T,
    old_output: NodeIndex,
    op: Box<dyn Operator>,
    inputs: &[Source],
) -> NodeIndex {
    let new_node = graph.graph.add_node(op);
    for (i, (src, out, shape)) in inputs.iter().enumerate() {
        graph.graph.add_edge(
            *src,
            new_node,
            Dependency::Data {
                input_order: i as u8,
                output_order: *out,
                shape: *shape,
            },
        );
    }
    move_outgoing_edge(old_output, new_node, &mut graph.graph);
    move_references(
        remap,
        &mut graph.no_delete,
        &mut graph.to_retrieve,
        old_output,
        new_node,
    );
    let region_inputs: Vec<NodeIndex> = sources(graph, old_output).iter().map(|s| s.0).collect();
    graph.graph.remove_node(old_output);
    remove_dead(graph, region_inputs);
    new_node
}

/// Adds `op` reading `inputs` (in input order). Returns the new node.
pub fn add_op(graph: &mut Graph, op: Box<dyn Operator>, inputs: &[Source]) -> NodeIndex {
    let new_node = graph.graph.add_node(op);
    for (i, (src, out, shape)) in inputs.iter().enumerate() {
        graph.graph.add_edge(
            *src,
            new_node,
            Dependency::Data {
                input_order: i as u8,
                output_order: *out,
                shape: *shape,
            },
        );
    }
    new_node
}

/// Hands every reader and reference of `old`'s output to output `output` of `new`. (luminal
/// counts a node's readers per output by grouping its edges in order, so a node's edges must be
/// added output by output, as callers of this do.)
pub fn move_output<T: ToIdsMut>(
    graph: &mut Graph,
    remap: &mut T,
    old: NodeIndex,
    new: NodeIndex,
    output: u8,
) {
    let edges: Vec<(NodeIndex, Dependency)> = graph
        .graph
        .edges_directed(old, Direction::Outgoing)
        .map(|e| (e.target(), *e.weight()))
        .collect();
    for (target, dep) in edges {
        let dep = match dep {
            Dependency::Data {
                input_order, shape, ..
            } => Dependency::Data {
                input_order,
                output_order: output,
                shape,
            },
            schedule => schedule,
        };
        graph.graph.add_edge(new, target, dep);
    }
    move_references(
        remap,
        &mut graph.no_delete,
        &mut graph.to_retrieve,
        old,
        new,
    );
}

/// Removes `nodes` (whose readers have been moved elsewhere) and then whatever only they fed.
pub fn remove_nodes(graph: &mut Graph, nodes: &[NodeIndex]) {
    let mut inputs = vec![];
    for &n in nodes {
        inputs.extend(sources(graph, n).into_iter().map(|s| s.0));
        graph.graph.remove_node(n);
    }
    remove_dead(graph, inputs);
}

/// Removes the nodes of `stack` and, transitively, their sources that are left without consumers,
/// except kept nodes (weights, inputs, outputs).
fn remove_dead(graph: &mut Graph, mut stack: Vec<NodeIndex>) {
    while let Some(n) = stack.pop() {
        if graph.graph.node_weight(n).is_none()
            || graph.no_delete.contains(&n)
            || !consumers(graph, n).is_empty()
        {
            continue;
        }
        stack.extend(sources(graph, n).into_iter().map(|s| s.0));
        graph.graph.remove_node(n);
    }
}

/// The inputs of the region that ends at `output`: walking back through every node for which
/// `inside` holds, the distinct nodes where the walk stops, constants left out, in the order
/// first reached.
pub fn region_inputs(
    graph: &Graph,
    output: NodeIndex,
    inside: impl Fn(&Graph, NodeIndex) -> bool,
) -> Vec<NodeIndex> {
    let mut stack = vec![output];
    let mut seen = std::collections::HashSet::new();
    let mut inputs = vec![];
    while let Some(n) = stack.pop() {
        if !seen.insert(n) {
            continue;
        }
        if n != output && !inside(graph, n) {
            if !is_op::<Constant>(graph, n) {
                inputs.push(n);
            }
            continue;
        }
        stack.extend(sources(graph, n).into_iter().rev().map(|s| s.0));
    }
    inputs
}

/// Whether `node` is one of luminal's primitive elementwise ops (what `model::qwen3` composes small
/// functions such as SiLU and the rotary embedding from).
pub fn is_primitive_elementwise(graph: &Graph, node: NodeIndex) -> bool {
    use luminal::op;
    is_op::<op::Add>(graph, node)
        || is_op::<op::Mul>(graph, node)
        || is_op::<op::Recip>(graph, node)
        || is_op::<op::Exp2>(graph, node)
        || is_op::<op::Log2>(graph, node)
        || is_op::<op::Sin>(graph, node)
        || is_op::<op::Sqrt>(graph, node)
        || is_op::<op::Contiguous>(graph, node)
}
