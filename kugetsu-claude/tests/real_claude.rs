//! The driver against the real Claude Code (to come).
