// The Express app behind serverless-http, configured as its README says
// for binary responses.
'use strict';

const serverless = require('serverless-http');
const app = require('./app');

exports.handler = serverless(app, { binary: ['application/octet-stream', 'image/*'] });
