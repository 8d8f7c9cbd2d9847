//! End-to-end tests of Coach live in `e2e/`; hostile plugins in `fixtures/`.
