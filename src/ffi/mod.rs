//! The extern "C" shell.
