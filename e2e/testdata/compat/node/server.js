// The Express app run directly: listens on 127.0.0.1 on a free port and
// prints "listening on PORT".
'use strict';

const app = require('./app');

const server = app.listen(0, '127.0.0.1', () => {
  console.log('listening on ' + server.address().port);
});
