-- See ../sqlite/0005_services.sql.
CREATE TABLE services (
	name       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
	serving    BIGINT           NOT NULL,
	created_at BIGINT           NOT NULL, -- unix nanoseconds
	updated_at BIGINT           NOT NULL  -- unix nanoseconds
);

CREATE TABLE revisions (
	service      TEXT COLLATE "C" NOT NULL REFERENCES services (name) ON DELETE CASCADE,
	number       BIGINT           NOT NULL,
	config       TEXT COLLATE "C" NOT NULL, -- stratus.ServiceConfig as JSON
	image_digest TEXT COLLATE "C" NOT NULL,
	created_at   BIGINT           NOT NULL, -- unix nanoseconds
	PRIMARY KEY (service, number)
);
