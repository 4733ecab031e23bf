//! Ordering of a DAG's tasks: a topological order, cycle detection, and downstream weights.

use std::collections::{BTreeMap, HashMap, VecDeque};

/// Returns the task ids in a topological order (ties keep the order the tasks were written in), or the ids
/// that form a cycle.
pub fn topological_order(tasks: &[(String, Vec<String>)]) -> Result<Vec<String>, Vec<String>> {
    let index: HashMap<&str, usize> = tasks.iter().enumerate().map(|(i, (id, _))| (id.as_str(), i)).collect();
    let mut indegree = vec![0usize; tasks.len()];
    let mut downstream: Vec<Vec<usize>> = vec![Vec::new(); tasks.len()];
    for (i, (_, upstream)) in tasks.iter().enumerate() {
        for up in upstream {
            if let Some(&u) = index.get(up.as_str()) {
                indegree[i] += 1;
                downstream[u].push(i);
            }
        }
    }
    let mut ready: VecDeque<usize> = (0..tasks.len()).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(tasks.len());
    while let Some(i) = ready.pop_front() {
        order.push(tasks[i].0.clone());
        for &d in &downstream[i] {
            indegree[d] -= 1;
            if indegree[d] == 0 {
                ready.push_back(d);
            }
        }
    }
    if order.len() == tasks.len() {
        return Ok(order);
    }
    Err(find_cycle(tasks, &index))
}

/// One cycle among the tasks, as a path whose last element leads back to the first.
fn find_cycle(tasks: &[(String, Vec<String>)], index: &HashMap<&str, usize>) -> Vec<String> {
    // Walk upstream edges with a colour-marking DFS (iterative, so deep graphs cannot overflow the stack).
    let mut colour = vec![0u8; tasks.len()];
    for root in 0..tasks.len() {
        if colour[root] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        colour[root] = 1;
        while let Some(&(node, next_edge)) = stack.last() {
            let upstream = &tasks[node].1;
            if next_edge < upstream.len() {
                let up = &upstream[next_edge];
                if let Some(top) = stack.last_mut() {
                    top.1 += 1;
                }
                let Some(&u) = index.get(up.as_str()) else {
                    continue;
                };
                if colour[u] == 1 {
                    let start = stack.iter().position(|(n, _)| *n == u).unwrap_or(0);
                    let mut cycle: Vec<String> = stack[start..].iter().map(|(n, _)| tasks[*n].0.clone()).collect();
                    cycle.reverse();
                    return cycle;
                }
                if colour[u] == 0 {
                    colour[u] = 1;
                    stack.push((u, 0));
                }
            } else {
                colour[node] = 2;
                stack.pop();
            }
        }
    }
    Vec::new()
}

/// The most tasks the exact weight count may visit for one DAG; past it, see [`Weights::approximate`].
pub const WEIGHT_STEPS: usize = 20_000_000;

/// Downstream priority weights.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Weights {
    pub by_task: BTreeMap<String, i64>,
    /// Tasks whose weight is an upper bound (their children's totals summed, shared tasks counted more than
    /// once) because counting each downstream task once would have gone past [`WEIGHT_STEPS`].
    pub approximate: usize,
}

/// Own weight plus the weights of every task downstream (each counted once), per task id (Airflow's
/// `downstream` weight rule). Linear for chains and trees: a task with one downstream task adds that task's
/// total; one with several walks its downstream tasks once, within a budget of [`WEIGHT_STEPS`] visits for
/// the whole DAG. The tasks must form no cycle (a task on one keeps its own weight).
pub fn downstream_weights(tasks: &[(String, Vec<String>, i64)]) -> Weights {
    let index: HashMap<&str, usize> = tasks
        .iter()
        .enumerate()
        .map(|(i, (id, _, _))| (id.as_str(), i))
        .collect();
    let mut downstream: Vec<Vec<usize>> = vec![Vec::new(); tasks.len()];
    let mut indegree = vec![0usize; tasks.len()];
    for (i, (_, upstream, _)) in tasks.iter().enumerate() {
        for up in upstream {
            if let Some(&u) = index.get(up.as_str()) {
                if !downstream[u].contains(&i) {
                    downstream[u].push(i);
                    indegree[i] += 1;
                }
            }
        }
    }
    // A topological order (Kahn's), walked backwards so every task's downstream tasks are done first.
    let mut order: Vec<usize> = (0..tasks.len()).filter(|&i| indegree[i] == 0).collect();
    let mut next = 0;
    while next < order.len() {
        for &d in &downstream[order[next]] {
            indegree[d] -= 1;
            if indegree[d] == 0 {
                order.push(d);
            }
        }
        next += 1;
    }
    let mut totals: Vec<i64> = tasks.iter().map(|(_, _, w)| *w).collect();
    let mut stamp = vec![0u32; tasks.len()];
    let mut budget = WEIGHT_STEPS;
    let mut approximate = 0;
    let mut stack = Vec::new();
    for (generation, &node) in order.iter().rev().enumerate() {
        let own = tasks[node].2;
        totals[node] = match downstream[node].as_slice() {
            [] => own,
            [only] => own.saturating_add(totals[*only]),
            children if budget > 0 => {
                let mark = generation as u32 + 1;
                let mut total = own;
                stack.clear();
                stack.extend_from_slice(children);
                while let Some(d) = stack.pop() {
                    if stamp[d] == mark {
                        continue;
                    }
                    stamp[d] = mark;
                    total = total.saturating_add(tasks[d].2);
                    stack.extend(&downstream[d]);
                    budget = budget.saturating_sub(1);
                }
                total
            }
            children => {
                approximate += 1;
                children.iter().fold(own, |sum, c| sum.saturating_add(totals[*c]))
            }
        };
    }
    Weights {
        by_task: tasks
            .iter()
            .zip(totals)
            .map(|((id, _, _), total)| (id.clone(), total))
            .collect(),
        approximate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(id: &str, up: &[&str]) -> (String, Vec<String>) {
        (id.to_string(), up.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn orders_and_detects_cycles() {
        let order = topological_order(&[t("c", &["b"]), t("a", &[]), t("b", &["a"])]).unwrap();
        assert_eq!(order, vec!["a", "b", "c"]);
        let cycle = topological_order(&[t("a", &["c"]), t("b", &["a"]), t("c", &["b"]), t("d", &[])]).unwrap_err();
        assert_eq!(cycle.len(), 3, "{cycle:?}");
        let self_loop = topological_order(&[t("a", &["a"])]).unwrap_err();
        assert_eq!(self_loop, vec!["a"]);
    }

    #[test]
    fn weights_sum_downstream_once() {
        let weights = downstream_weights(&[
            ("a".into(), vec![], 1),
            ("b".into(), vec!["a".into()], 2),
            ("c".into(), vec!["a".into()], 3),
            ("d".into(), vec!["b".into(), "c".into()], 4),
        ]);
        assert_eq!(weights.by_task["a"], 10);
        assert_eq!(weights.by_task["b"], 6);
        assert_eq!(weights.by_task["d"], 4);
        assert_eq!(weights.approximate, 0);
    }

    #[test]
    fn weights_of_a_long_chain_are_linear() {
        let n = 200_000;
        let tasks: Vec<(String, Vec<String>, i64)> = (0..n)
            .map(|i| {
                (
                    format!("t{i}"),
                    if i == 0 { vec![] } else { vec![format!("t{}", i - 1)] },
                    1,
                )
            })
            .collect();
        let weights = downstream_weights(&tasks);
        assert_eq!(weights.by_task["t0"], n as i64);
        assert_eq!(weights.by_task[&format!("t{}", n - 1)], 1);
        assert_eq!(weights.approximate, 0);
    }

    /// Every task's weight counted the slow, obvious way.
    fn naive_weights(tasks: &[(String, Vec<String>, i64)]) -> BTreeMap<String, i64> {
        let mut out = BTreeMap::new();
        for (id, _, weight) in tasks {
            let mut seen = std::collections::HashSet::new();
            let mut stack = vec![id.clone()];
            let mut total = *weight;
            while let Some(current) = stack.pop() {
                for (other, upstream, w) in tasks {
                    if upstream.contains(&current) && seen.insert(other.clone()) {
                        total += w;
                        stack.push(other.clone());
                    }
                }
            }
            out.insert(id.clone(), total);
        }
        out
    }

    proptest! {
        /// Edges only from lower to higher index make a DAG: the order puts every upstream first.
        #[test]
        fn order_respects_every_edge(edges in proptest::collection::vec((0usize..30, 0usize..30), 0..80)) {
            let mut tasks: Vec<(String, Vec<String>)> = (0..30).map(|i| (format!("t{i}"), vec![])).collect();
            for (a, b) in edges {
                let (lo, hi) = (a.min(b), a.max(b));
                if lo != hi {
                    tasks[hi].1.push(format!("t{lo}"));
                }
            }
            let order = topological_order(&tasks).unwrap();
            let position: HashMap<&String, usize> = order.iter().enumerate().map(|(i, id)| (id, i)).collect();
            for (id, upstream) in &tasks {
                for up in upstream {
                    prop_assert!(position[up] < position[id]);
                }
            }
        }

        /// The fast count equals the obvious one on any DAG (shared downstream tasks counted once).
        #[test]
        fn weights_equal_the_obvious_count(
            edges in proptest::collection::vec((0usize..25, 0usize..25), 0..70),
            own in proptest::collection::vec(1i64..5, 25),
        ) {
            let mut tasks: Vec<(String, Vec<String>, i64)> =
                (0..25).map(|i| (format!("t{i}"), vec![], own[i])).collect();
            for (a, b) in edges {
                let (lo, hi) = (a.min(b), a.max(b));
                if lo != hi {
                    tasks[hi].1.push(format!("t{lo}"));
                }
            }
            let weights = downstream_weights(&tasks);
            prop_assert_eq!(weights.approximate, 0);
            prop_assert_eq!(weights.by_task, naive_weights(&tasks));
        }
    }
}
