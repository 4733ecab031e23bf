//! `empty`: does nothing. The scheduler completes it without a runner (as Airflow does); a runner that is
//! asked to run it anyway succeeds.

use engine::operators::OperatorDef;

use crate::operator::{Operator, OperatorContext, OperatorFuture, OperatorResult};

pub struct Empty;

impl Operator for Empty {
    fn definition(&self) -> OperatorDef {
        engine::operators::builtin::empty()
    }

    fn run(&self, _ctx: OperatorContext) -> OperatorFuture {
        Box::pin(async { OperatorResult::Success(None) })
    }
}
