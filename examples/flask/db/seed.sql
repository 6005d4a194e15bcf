-- Seed rows every test starts with (nocrud_fixtures: loaded into the template after the migrations).
-- Each user's bearer token is "<username>-token"; the table keeps only its SHA-256.
INSERT INTO users (id, username, role) VALUES
    (1, 'alice', 'admin'),
    (2, 'bob', 'member'),
    (3, 'carol', 'member'),
    (4, 'victor', 'viewer');

INSERT INTO api_tokens (token_sha256, user_id)
SELECT encode(sha256(convert_to(username || '-token', 'UTF8')), 'hex'), id FROM users;

INSERT INTO projects (id, name, description, owner_id) VALUES
    (1, 'Field survey', 'Spring bird counts along the river', 2);

INSERT INTO tags (id, name, color) VALUES
    (1, 'todo', '#d9480f'),
    (2, 'idea', '#1971c2');

INSERT INTO notes (id, project_id, author_id, title, body, pinned) VALUES
    (1, 1, 2, 'Route', 'Start at the north bridge.', true),
    (2, 1, 3, 'Gear', 'Binoculars, tally counter.', false);

INSERT INTO note_tags (note_id, tag_id) VALUES (1, 1), (2, 1), (2, 2);

-- Explicit ids above: move every identity past them, or the first POST collides with a seed row.
SELECT setval(pg_get_serial_sequence('users', 'id'), (SELECT max(id) FROM users));
SELECT setval(pg_get_serial_sequence('projects', 'id'), (SELECT max(id) FROM projects));
SELECT setval(pg_get_serial_sequence('tags', 'id'), (SELECT max(id) FROM tags));
SELECT setval(pg_get_serial_sequence('notes', 'id'), (SELECT max(id) FROM notes));
