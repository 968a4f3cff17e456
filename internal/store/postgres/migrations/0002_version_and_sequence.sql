-- A work item's version counts the writes of its row: a write of an item read earlier
-- is a compare-and-set on it.
ALTER TABLE work ADD COLUMN version BIGINT NOT NULL DEFAULT 0;

-- The one row that transactions making IDs take turns on, across replicas: the last ID
-- made, so that the next is above it whatever the replica's clock says (package id).
CREATE TABLE id_sequence (
    one     BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
    last_id TEXT COLLATE "C" NOT NULL DEFAULT ''
);
INSERT INTO id_sequence DEFAULT VALUES;
