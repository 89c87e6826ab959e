//! `ects backup`: walk folders, skip what the server has, send the rest through the spool.
