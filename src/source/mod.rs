//! Where workers come from: the claude-copilot orchestrator (its folder and
//! Task Copilot DB), or a config file ([`config`]).

pub mod config;
