//! Acting: turning planned [`Action`](crate::plan::Action)s into the programs that carry them out.
//!
//! [`command`] maps an action to argv (pure, shared by `converge plan` for display and by the
//! executor).

pub mod command;
