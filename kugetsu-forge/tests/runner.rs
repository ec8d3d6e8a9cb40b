//! The integration tests of kugetsu-forge, one binary: each file is a module.

mod stand_in;
mod writes;
