//! `empty`: does nothing. The scheduler completes it without a runner (as Airflow does); a runner that is
//! asked to run it anyway succeeds.

use crate::operator::{Operator, OperatorContext, OperatorFuture, OperatorResult};

pub struct Empty;

impl Operator for Empty {
    fn run(&self, _ctx: OperatorContext) -> OperatorFuture {
        Box::pin(async { OperatorResult::Success(None) })
    }
}
