//! eligo: a streaming X12 834 processor.
pub mod ack;
pub mod batch;
pub mod catalog;
pub mod changes;
pub mod check;
pub mod config;
pub mod enrollment;
pub mod finding;
pub mod fsio;
pub mod gen;
pub mod lexer;
pub mod lifecycle;
pub mod output;
pub mod parallel;
pub mod portal;
pub mod schema;
pub mod validate;
