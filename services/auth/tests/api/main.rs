//! Black-box tests of the auth service through its router (no sockets, except
//! the fake Google provider).

mod google;
mod helpers;
mod hostile_input;
mod openapi;
mod register;
mod session;
mod throttle;
mod token;
