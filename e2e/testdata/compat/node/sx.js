// The Express app behind @codegenie/serverless-express, configured as its
// README says for binary responses.
'use strict';

const serverlessExpress = require('@codegenie/serverless-express');
const app = require('./app');

exports.handler = serverlessExpress({
  app,
  binarySettings: { contentTypes: ['application/octet-stream', 'image/*'] },
});
