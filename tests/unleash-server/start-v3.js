// Starts Unleash 3.17.6 for the integration tests.
//
// Keptn 0.6 and keptn-contrib/unleash-service talk to the 3.x admin API with HTTP Basic auth
// (UNLEASH_USER:UNLEASH_TOKEN). Stock 3.x ("unsecure" mode) accepts any user name and ignores the
// password, so a client that sends a wrong token would pass unnoticed. This launcher installs an
// admin-API guard that accepts exactly one user/password pair, taken from the environment, so
// the tests prove the client sends the right Basic credentials and reports a wrong token.
//
// Environment: DATABASE_URL, HTTP_HOST, HTTP_PORT, UNLEASH_BASIC_USER, UNLEASH_BASIC_PASSWORD.
'use strict';

const unleash = require('unleash-server-v3');

const user = process.env.UNLEASH_BASIC_USER;
const password = process.env.UNLEASH_BASIC_PASSWORD;
if (!user || !password) {
    console.error('start-v3.js: UNLEASH_BASIC_USER and UNLEASH_BASIC_PASSWORD must be set');
    process.exit(2);
}

function credentials(req) {
    const header = req.header('authorization') || '';
    const match = /^Basic\s+(.+)$/i.exec(header);
    if (!match) {
        return undefined;
    }
    const decoded = Buffer.from(match[1], 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) {
        return undefined;
    }
    return { name: decoded.slice(0, colon), pass: decoded.slice(colon + 1) };
}

function basicAuthGuard(app) {
    app.use('/api/admin/', (req, res, next) => {
        const given = credentials(req);
        if (given && given.name === user && given.pass === password) {
            req.user = new unleash.User({ username: given.name });
            return next();
        }
        res.set('WWW-Authenticate', 'Basic realm="unleash"');
        return res.status(401).json({ message: 'Basic authentication required' });
    });
}

unleash
    .start({
        databaseUrl: process.env.DATABASE_URL,
        host: process.env.HTTP_HOST || '127.0.0.1',
        port: Number(process.env.HTTP_PORT || 4242),
        adminAuthentication: 'custom',
        preRouterHook: basicAuthGuard,
        versionCheck: { enable: 'false' },
    })
    .catch((err) => {
        console.error('start-v3.js: Unleash 3 failed to start:', err);
        process.exit(1);
    });
