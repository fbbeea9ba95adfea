DROP TABLE cache_invalidations;
DROP TABLE work_item_assignees;
DROP TABLE work_items;
DROP TABLE sessions;
DROP TABLE users;
