//! Inventory collection on fixture trees captured from real machines (agent/tests/fixtures/
//! inventory, see its INDEX).
