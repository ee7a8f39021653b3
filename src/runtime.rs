//! Runtime: builds components from Config, spawns every task, shutdown, watchdog.
