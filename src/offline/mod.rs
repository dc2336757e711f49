//! The CSV files of the offline commands: usage and capacity readers with errors that name file, line
//! and column, and one table writer so `--format csv` and `--format json` carry the same content.
//! Pure: no tokio, no sqlx; shared by every offline command.

mod read;
mod write;

pub use read::{
    CapacityTable, InputError, UsageSeries, parse_capacity, parse_usage, read_capacity, read_usage,
};
pub use write::{Cell, Format, Table};
