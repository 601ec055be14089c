-- One of several small steps, so processes migrating a fresh file at once overlap.
CREATE TABLE step_6 (id INTEGER PRIMARY KEY);
