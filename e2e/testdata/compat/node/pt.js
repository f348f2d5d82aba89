// Powertools for AWS Lambda's Logger, unchanged: the handler logs one line
// and returns it (caught on its way to stdout), so that the test reads the
// cold_start field the Logger wrote.
'use strict';

const { Logger } = require('@aws-lambda-powertools/logger');

const logger = new Logger({ serviceName: 'compat' });

exports.handler = async (event, context) => {
  logger.addContext(context);
  const lines = [];
  const write = process.stdout.write;
  process.stdout.write = (chunk) => { lines.push(String(chunk)); return true; };
  try {
    logger.info('compat');
  } finally {
    process.stdout.write = write;
  }
  return JSON.parse(lines.join('').trim().split('\n').pop());
};
