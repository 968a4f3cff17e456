-- A work item's version counts the writes of its row: a write of an item read earlier
-- is a compare-and-set on it.
ALTER TABLE work ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
