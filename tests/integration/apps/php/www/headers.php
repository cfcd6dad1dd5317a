<?php
header("X-A: 1");
header("X-A: 2", false);
header("X-Replaced: old");
header("X-Replaced: new");
setcookie("c1", "v 1");
setcookie("c2", "v2", ["path" => "/p", "httponly" => true]);
http_response_code(201);
echo "ok";
