//! Faults on a running network, pumba's and Chaos Mesh's vocabulary on this machine's nodes: which nodes a
//! fault hits ([`targets`]); faults on node processes ([`process`]: kill, pause, stop, restart); faults on
//! peer links ([`network`]: netem delay and rate, partitions) through a fault-injecting TCP proxy ([`link`]);
//! and the ledger ([`ledger`]) that records every part of a fault before it is applied, so whatever happens
//! to the process that applied it, the engine undoes it; several faults as one episode ([`episode`]); attacks
//! beside them ([`attack`]); the resilience verdict ([`verdict`]). CPU and memory pressure ([`stress`],
//! `stress-ng`). Clock skew is read and refused with the reason (no mechanism here reaches a Go client's clock;
//! see `docs/chaos.md`).

pub mod attack;
pub mod clock;
pub mod episode;
pub mod ledger;
pub mod link;
pub mod mesh;
pub mod netns;
pub mod network;
pub mod process;
pub mod spec;
pub mod stress;
pub mod targets;
pub mod verdict;

pub use ledger::{Book, FaultLedger, Undo};
pub use network::NetworkFault;
pub use process::{FaultReport, ProcessFault};
pub use targets::Selector;

/// Any fault.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    Process(ProcessFault),
    Network(NetworkFault),
    /// CPU and memory pressure on the targets' host (`stress-ng`).
    Stress(stress::StressFault),
    /// One node's clock off by `offset_seconds` for `duration`.
    Clock {
        offset_seconds: i64,
        duration: std::time::Duration,
    },
}

impl Fault {
    pub fn name(&self) -> String {
        match self {
            Fault::Process(f) => f.name(),
            Fault::Network(f) => f.name(),
            Fault::Stress(f) => f.name(),
            Fault::Clock {
                offset_seconds,
                duration,
            } => clock::name(*offset_seconds, *duration),
        }
    }
}

impl Fault {
    /// How long the fault lasts once applied (its undoing excluded): a kill with restart until the restart.
    pub fn lasts(&self) -> std::time::Duration {
        match self {
            Fault::Process(ProcessFault::Kill { restart_after, .. }) => restart_after.unwrap_or_default(),
            Fault::Process(ProcessFault::Pause { duration } | ProcessFault::Stop { duration }) => *duration,
            Fault::Process(ProcessFault::Restart) => std::time::Duration::ZERO,
            Fault::Network(f) => f.duration(),
            Fault::Stress(f) => f.duration,
            Fault::Clock { duration, .. } => *duration,
        }
    }
}

/// A fault with the nodes (and, for a network fault, the links) it hits, chosen before anything is applied.
#[derive(Debug, Clone)]
pub struct Planned {
    pub fault: Fault,
    pub nodes: Vec<String>,
    pub links: Vec<network::LinkPlan>,
    /// For a network fault on nodes in network namespaces: the tables and qdiscs it makes (no links then).
    pub rules: Vec<netns::Rule>,
    /// For a fault on a network on Kubernetes: the Chaos Mesh objects that make it (nothing else then).
    pub mesh: Vec<mesh::MeshObject>,
    pub seed: u64,
}

/// What is wrong with a plan: with the target (`target: true`) or with the fault.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanError {
    pub target: bool,
    pub message: String,
}

/// Chooses what `fault` on `target` hits in `record`; an error says what is wrong and nothing is applied.
pub fn plan(
    record: &crate::backend::local::NetworkRecord,
    target: &Selector,
    fault: Fault,
    seed: u64,
) -> Result<Planned, PlanError> {
    let nodes = target
        .select(record, seed)
        .map_err(|message| PlanError { target: true, message })?;
    let refuse = |message: String| PlanError { target: false, message };
    // Nodes in network namespaces: the kernel acts on their packets, except for delay (no netem here).
    if let (Fault::Network(f), Some(layout)) = (&fault, &record.netns) {
        if netns::expresses(f) {
            let others = network::other_group(record, &nodes, f, seed).map_err(refuse)?;
            let rules = netns::plan(record, layout, &nodes, &others, f, seed).map_err(refuse)?;
            return Ok(Planned {
                fault,
                nodes,
                links: Vec::new(),
                rules,
                mesh: Vec::new(),
                seed,
            });
        }
    }
    let links = match &fault {
        Fault::Network(f) => network::plan(record, &nodes, f, seed).map_err(refuse)?,
        Fault::Process(_) | Fault::Stress(_) => Vec::new(),
        Fault::Clock { .. } => match clock::refusal() {
            None => Vec::new(),
            Some(message) => return Err(PlanError { target: false, message }),
        },
    };
    Ok(Planned {
        fault,
        nodes,
        links,
        rules: Vec::new(),
        mesh: Vec::new(),
        seed,
    })
}

/// Chooses what `fault` on `target` hits in a network on any backend: on Kubernetes, the Chaos Mesh objects
/// that make it ([`mesh`]); locally as [`plan`] does.
pub fn plan_any(
    record: &crate::backend::any::AnyRecord,
    target: &Selector,
    fault: Fault,
    seed: u64,
) -> Result<Planned, PlanError> {
    let record = match record {
        crate::backend::any::AnyRecord::Local(local) => return plan(local, target, fault, seed),
        crate::backend::any::AnyRecord::Kubernetes(kube) => kube,
    };
    let nodes = target
        .select(record, seed)
        .map_err(|message| PlanError { target: true, message })?;
    let refuse = |message: String| PlanError { target: false, message };
    let others: Vec<String> = match &fault {
        Fault::Network(f) => network::other_group(record, &nodes, f, seed)
            .map_err(refuse)?
            .into_iter()
            .collect(),
        _ => Vec::new(),
    };
    let objects = mesh::render(record, &fault, &nodes, &others).map_err(refuse)?;
    Ok(Planned {
        fault,
        nodes,
        links: Vec::new(),
        rules: Vec::new(),
        mesh: objects,
        seed,
    })
}

/// Applies a planned fault to network `name` (recorded in `ledger` under a new fault id), and undoes it at its
/// end or when `cancel` fires.
pub async fn apply<S, B, L>(
    store: &S,
    backend: &B,
    ledger: &L,
    name: &str,
    planned: &Planned,
    cancel: &tokio_util::sync::CancellationToken,
    progress: crate::backend::Progress<'_>,
) -> crate::error::Result<FaultReport>
where
    S: crate::registry::NetworkStore,
    B: crate::backend::NodeBackend,
    L: FaultLedger,
{
    let book = Book::new(ledger, name, backend.host_id())?;
    if !planned.mesh.is_empty() {
        return mesh::apply(
            &book,
            backend,
            &planned.fault,
            &planned.nodes,
            &planned.mesh,
            cancel,
            progress,
        )
        .await;
    }
    match &planned.fault {
        Fault::Process(fault) => {
            process::apply(store, backend, &book, name, &planned.nodes, fault, cancel, progress).await
        }
        Fault::Network(fault) if !planned.rules.is_empty() => {
            netns::apply(&book, &planned.nodes, &planned.rules, fault, cancel, progress).await
        }
        Fault::Network(fault) => {
            network::apply(
                &book,
                &planned.nodes,
                &planned.links,
                fault,
                planned.seed,
                cancel,
                progress,
            )
            .await
        }
        Fault::Stress(fault) => {
            let row = store.get_network(name).await?;
            let record = crate::lifecycle::record_of(&row)?
                .ok_or_else(|| crate::error::Error::Rejected(format!("network `{name}` has no nodes recorded")))?;
            stress::apply(&book, &record, &planned.nodes, fault, cancel, progress).await
        }
        Fault::Clock {
            offset_seconds,
            duration,
        } => {
            clock::apply(
                store,
                backend,
                &book,
                name,
                &planned.nodes,
                *offset_seconds,
                *duration,
                cancel,
                progress,
            )
            .await
        }
    }
}
