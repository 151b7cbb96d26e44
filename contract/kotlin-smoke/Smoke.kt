// Smoke test of the generated Kotlin client (clients/kotlin) against a live server.
//
// Usage: java ... SmokeKt <base-url> <api-key>
// Prints one line per check, `SMOKE_DEVICES <group> <device-a> <device-b>` for the caller's
// database checks, and exits 1 if any check failed (2 on an unexpected exception).
//
// One function per area of the API, run in order by main() and sharing a Smoke context (the
// API objects, the group and the two devices). A new area (the device token, location history,
// the group's event stream) is a new function added to the list in main().
package com.phonemanager.smoke

import com.phonemanager.client.apis.DevicesApi
import com.phonemanager.client.apis.KeysApi
import com.phonemanager.client.apis.LocationsApi
import com.phonemanager.client.apis.PrivacyApi
import com.phonemanager.client.infrastructure.ApiClient
import com.phonemanager.client.infrastructure.ClientError
import com.phonemanager.client.infrastructure.ClientException
import com.phonemanager.client.infrastructure.Serializer
import com.phonemanager.client.infrastructure.Success
import com.phonemanager.client.models.BatchLocation
import com.phonemanager.client.models.DeviceListResponse
import com.phonemanager.client.models.ErrorBody
import com.phonemanager.client.models.Platform
import com.phonemanager.client.models.RegisterDeviceRequest
import com.phonemanager.client.models.UploadLocationBatchRequest
import com.phonemanager.client.models.UploadLocationRequest
import com.phonemanager.client.models.UploadResponse
import java.io.IOException
import java.io.InputStream
import java.io.OutputStream
import java.net.HttpURLConnection
import java.net.InetAddress
import java.net.ServerSocket
import java.net.URL
import java.util.UUID
import java.util.concurrent.CopyOnWriteArrayList
import java.util.concurrent.CountDownLatch
import java.util.concurrent.TimeUnit
import kotlin.concurrent.thread
import kotlin.system.exitProcess
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.delay
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.runInterruptible
import kotlinx.coroutines.withTimeoutOrNull
import kotlinx.serialization.SerializationException
import kotlinx.serialization.json.Json
import okhttp3.Call
import okhttp3.OkHttpClient
import okhttp3.Request

// --- checks ---------------------------------------------------------------------------------

private var failures = 0

private fun check(what: String, ok: Boolean, detail: () -> Any? = { null }) {
    if (ok) {
        println("  ok   $what")
    } else {
        failures++
        println("  FAIL $what${detail()?.let { ": $it" } ?: ""}")
    }
}

/** The raw body of a 4xx answer: the client keeps it as a String. */
private fun ClientException.rawBody(): String? = (response as? ClientError<*>)?.body as? String

/** The error envelope of a 4xx answer as the typed ErrorBody, read as clients/kotlin/README.md shows. */
private fun ClientException.errorBody(): ErrorBody? =
    rawBody()?.let { runCatching { Serializer.kotlinxSerializationJson.decodeFromString<ErrorBody>(it) }.getOrNull() }

private fun header(headers: Map<String, List<String>>, name: String): String? =
    headers.entries.firstOrNull { it.key.equals(name, ignoreCase = true) }?.value?.firstOrNull()

/** Runs [call], which must fail with HTTP [status] and error code [code]; returns the exception. */
private suspend fun expectClientError(what: String, status: Int, code: String, call: suspend () -> Unit): ClientException? {
    try {
        call()
        check(what, false) { "expected HTTP $status, the call succeeded" }
    } catch (e: ClientException) {
        val body = e.errorBody()
        check(what, e.statusCode == status && body?.error == code) {
            "expected $status/$code, got ${e.statusCode}/${body?.error} (${e.rawBody()})"
        }
        return e
    }
    return null
}

// --- shared state ---------------------------------------------------------------------------

/** What the areas share: the API objects on one OkHttpClient, the group and its two devices. */
private class Smoke(val baseUrl: String, val apiKey: String) {
    /** The key set by an OkHttp interceptor, as the client README recommends. */
    val http: OkHttpClient = OkHttpClient.Builder()
        .addInterceptor { chain -> chain.proceed(chain.request().newBuilder().header("X-API-Key", apiKey).build()) }
        .build()
    val devices = DevicesApi(baseUrl, http)
    val locations = LocationsApi(baseUrl, http)
    val keys = KeysApi(baseUrl, http)
    val privacy = PrivacyApi(baseUrl, http)

    val group = "smoke-" + UUID.randomUUID().toString().substring(0, 8)
    val deviceA: UUID = UUID.randomUUID()
    val deviceB: UUID = UUID.randomUUID()
    val now = System.currentTimeMillis()

    /** A's single fix (uploads), read back by listing and export. */
    val single = UploadLocationRequest(
        deviceId = deviceA, timestamp = now - 120_000, latitude = 48.1374, longitude = 11.5755, accuracy = 12.5,
        provider = "fused", batteryLevel = 81,
    )

    /** B's batch (uploads), sent with an Idempotency-Key. */
    val batch = UploadLocationBatchRequest(
        deviceId = deviceB,
        locations = listOf(
            BatchLocation(timestamp = now - 90_000, latitude = 52.5200, longitude = 13.4050, accuracy = 8.0),
            BatchLocation(timestamp = now - 30_000, latitude = 52.5210, longitude = 13.4060, accuracy = 5.0, speed = 1.4),
            BatchLocation(timestamp = now - 60_000, latitude = 52.5205, longitude = 13.4055, accuracy = 6.0),
        ),
    )
}

// --- main -----------------------------------------------------------------------------------

fun main(args: Array<String>) {
    if (args.size != 2) {
        System.err.println("usage: SmokeKt <base-url> <api-key>")
        exitProcess(64)
    }
    val s = Smoke(args[0], args[1])
    println("SMOKE_DEVICES ${s.group} ${s.deviceA} ${s.deviceB}")
    try {
        runBlocking {
            // Coming with the server's next changes, each as one more function here:
            // deviceToken(s) (Authorization: Bearer), history(s), groupStream(s) (SSE).
            auth(s)
            registration(s)
            uploads(s)
            listing(s)
            errors(s)
            privacy(s)
            plainKotlinxSerialization(s)
            cancellation()
            deactivation(s)
        }
    } catch (e: Exception) {
        println("  FAIL unexpected exception")
        e.printStackTrace(System.out)
        exitProcess(2)
    }
    if (failures > 0) {
        println("kotlin smoke: $failures check(s) failed")
        exitProcess(1)
    }
    println("kotlin smoke: all checks passed")
    // OkHttp's dispatcher threads (enqueue) are not daemons and idle for 60 s before exiting.
    exitProcess(0)
}

// --- areas ----------------------------------------------------------------------------------

/** X-API-Key: missing (401 envelope), set by an interceptor, set in ApiClient.apiKey. */
private suspend fun auth(s: Smoke) {
    expectClientError("a request without X-API-Key gets 401 unauthorized", 401, "unauthorized") {
        KeysApi(s.baseUrl).getCurrentKey()
    }
    val me = s.keys.getCurrentKey()
    check("GET /keys/current describes the key (interceptor)", s.apiKey.startsWith(me.prefix) && !me.isAdmin) { me }
    // The generated alternative: the process-wide key map read by every API instance.
    ApiClient.apiKey["X-API-Key"] = s.apiKey
    try {
        check("GET /keys/current with ApiClient.apiKey", KeysApi(s.baseUrl).getCurrentKey().prefix == me.prefix)
    } finally {
        ApiClient.apiKey.remove("X-API-Key")
    }
}

/** Two devices in one group; the platform defaults to android. */
private suspend fun registration(s: Smoke) {
    val a = s.devices.registerDevice(RegisterDeviceRequest(deviceId = s.deviceA, displayName = "Alice's Phone", groupId = s.group))
    check("register A (platform defaults to android)", a.deviceId == s.deviceA && a.groupId == s.group && a.platform == Platform.ANDROID) { a }
    val b = s.devices.registerDevice(
        RegisterDeviceRequest(deviceId = s.deviceB, displayName = "Bob's Phone", groupId = s.group, platform = Platform.IOS, fcmToken = "fcm-smoke"),
    )
    check("register B (ios)", b.deviceId == s.deviceB && b.displayName == "Bob's Phone" && b.platform == Platform.IOS) { b }
}

/** A single fix, a batch with an Idempotency-Key, its replay, and the key reused for other data. */
private suspend fun uploads(s: Smoke) {
    val single = s.locations.uploadLocation(s.single)
    check("single upload stores 1 fix", single.success && single.processedCount == 1) { single }

    val key = UUID.randomUUID().toString()
    val first = s.locations.uploadLocationBatchWithHttpInfo(s.batch, key) as Success<*>
    val firstBody = first.data as UploadResponse
    check("batch stores 3 fixes", first.statusCode == 200 && firstBody.processedCount == 3) { firstBody }
    check("first batch is not a replay", header(first.headers, "Idempotent-Replayed") == null) { first.headers }
    val retry = s.locations.uploadLocationBatchWithHttpInfo(s.batch, key) as Success<*>
    check("batch retry with the same Idempotency-Key answers the same processed_count", retry.data == firstBody) { retry.data }
    check("batch retry is marked Idempotent-Replayed: true", header(retry.headers, "Idempotent-Replayed") == "true") { retry.headers }
    expectClientError("the same Idempotency-Key with another body gets 422", 422, "idempotency_key_reused") {
        s.locations.uploadLocationBatch(s.batch.copy(locations = s.batch.locations.take(1)), key)
    }
}

/** The group listing shows both devices with their newest fix. */
private suspend fun listing(s: Smoke) {
    val listed = s.devices.listDevices(s.group).devices
    check("group lists both devices, sorted by name", listed.map { it.deviceId } == listOf(s.deviceA, s.deviceB)) { listed }
    val la = listed.firstOrNull { it.deviceId == s.deviceA }?.lastLocation
    check(
        "A's last_location is the single fix",
        la != null && la.latitude == 48.1374 && la.longitude == 11.5755 && la.accuracy == 12.5 &&
            la.timestamp.toInstant().toEpochMilli() == s.single.timestamp,
    ) { la }
    val lb = listed.firstOrNull { it.deviceId == s.deviceB }?.lastLocation
    check(
        "B's last_location is the batch's newest fix by capture time",
        lb != null && lb.latitude == 52.5210 && lb.longitude == 13.4060 && lb.timestamp.toInstant().toEpochMilli() == s.now - 30_000,
    ) { lb }
    check("last_seen_at is set", listed.all { it.lastSeenAt != null }) { listed }
}

/** 4xx answers: the error envelope decodes into the typed ErrorBody. */
private suspend fun errors(s: Smoke) {
    val invalid = expectClientError("an out-of-range latitude gets 400 validation_error", 400, "validation_error") {
        s.locations.uploadLocation(s.single.copy(latitude = 123.0))
    }?.errorBody()
    check(
        "the validation error lists details (field latitude)",
        invalid != null && invalid.details.orEmpty().any { it.field == "latitude" } && invalid.message.isNotEmpty(),
    ) { invalid }
    val batchInvalid = expectClientError("an invalid batch fix gets 400 validation_error", 400, "validation_error") {
        s.locations.uploadLocationBatch(s.batch.copy(locations = listOf(s.batch.locations[0], s.batch.locations[1].copy(accuracy = -1.0))))
    }?.errorBody()
    check("batch details name locations[1].accuracy", batchInvalid?.details?.any { it.field == "locations[1].accuracy" } == true) {
        batchInvalid
    }
    val notFound = expectClientError("an unregistered device gets 404 not_found", 404, "not_found") {
        s.locations.uploadLocation(s.single.copy(deviceId = UUID.randomUUID()))
    }
    // The envelope has no UUID or date field: a plain Json (as in a Ktor app) reads it too.
    val plain = notFound?.rawBody()?.let { Json { ignoreUnknownKeys = true }.decodeFromString<ErrorBody>(it) }
    check("a plain Json { ignoreUnknownKeys = true } decodes the error envelope", plain?.error == "not_found") { plain }
}

/** The data export (privacy tag) of A: the device and its one fix. */
private suspend fun privacy(s: Smoke) {
    val export = s.privacy.exportDeviceData(s.deviceA)
    check(
        "the export of A holds the device and its single fix",
        export.device.deviceId == s.deviceA && export.device.platform == Platform.ANDROID && export.locationCount == 1L &&
            export.locations.singleOrNull()?.capturedAt?.toInstant()?.toEpochMilli() == s.single.timestamp,
    ) { export }
}

/**
 * The models outside the generated API classes, as a Ktor app would use them: a server response
 * fetched without OkHttp (HttpURLConnection) and decoded with a plain kotlinx Json. Models with
 * UUID or java.time fields mark them @Contextual, so that Json needs the client's
 * SerializersModule; unknown keys are ignored and an unknown enum value becomes
 * UNKNOWN_DEFAULT_OPEN_API.
 */
private suspend fun plainKotlinxSerialization(s: Smoke) {
    val raw = runInterruptible(Dispatchers.IO) {
        val connection = URL("${s.baseUrl}/api/v1/devices?group_id=${s.group}").openConnection() as HttpURLConnection
        connection.setRequestProperty("X-API-Key", s.apiKey)
        connection.setRequestProperty("Accept", "application/json")
        connection.inputStream.use { it.readBytes().toString(Charsets.UTF_8) }
    }
    val viaClient = s.devices.listDevices(s.group)

    val ktorJson = Json {
        ignoreUnknownKeys = true
        serializersModule = Serializer.kotlinxSerializationAdapters
    }
    val decoded = runCatching { ktorJson.decodeFromString<DeviceListResponse>(raw) }
    check("Json { ignoreUnknownKeys; serializersModule = Serializer.kotlinxSerializationAdapters } decodes GET /devices like the client", decoded.getOrNull() == viaClient) {
        decoded.exceptionOrNull() ?: decoded.getOrNull()
    }
    val bare = runCatching { Json { ignoreUnknownKeys = true }.decodeFromString<DeviceListResponse>(raw) }
    check("without that module the UUID fields have no serializer (SerializationException, as the README says)", bare.exceptionOrNull() is SerializationException) {
        bare.exceptionOrNull() ?: "it decoded: the README's note on serializersModule is out of date"
    }

    // What a newer server might send: a platform this client does not know, and a new field.
    check("the raw JSON has A's platform as \"platform\":\"android\"", raw.contains("\"platform\":\"android\"")) { raw }
    val newer = raw.replace("\"platform\":\"android\"", "\"platform\":\"windows\"")
        .replaceFirst("{", "{\"next_cursor\":\"abc\",\"new_object\":{\"x\":[1,2]},")
    for ((name, json) in listOf("the client's Serializer" to Serializer.kotlinxSerializationJson, "the plain Json" to ktorJson)) {
        val members = runCatching { json.decodeFromString<DeviceListResponse>(newer).devices }
        check(
            "$name decodes an unknown platform (\"windows\") as UNKNOWN_DEFAULT_OPEN_API and skips unknown keys",
            members.getOrNull()?.map { it.platform } == listOf(Platform.UNKNOWN_DEFAULT_OPEN_API, Platform.IOS),
        ) { members.exceptionOrNull() ?: members.getOrNull() }
    }
}

/** Records every Call the API objects create, to look at it after cancelling. */
private class RecordingCallFactory(private val delegate: OkHttpClient) : Call.Factory {
    val calls = CopyOnWriteArrayList<Call>()

    override fun newCall(request: Request): Call = delegate.newCall(request).also { calls += it }
}

/**
 * A one-connection HTTP server on 127.0.0.1 that reads the request head, writes [respond] and then
 * never sends anything more, so a call to it stays in flight until it is cancelled.
 */
private class StallingServer(respond: (OutputStream) -> Unit) : AutoCloseable {
    private val socket = ServerSocket(0, 1, InetAddress.getLoopbackAddress())
    val baseUrl = "http://127.0.0.1:${socket.localPort}"
    val responded = CountDownLatch(1)
    val connectionClosed = CountDownLatch(1)

    init {
        thread(isDaemon = true, name = "stalling-server") {
            try {
                socket.accept().use { connection ->
                    val input = connection.getInputStream()
                    readRequestHead(input)
                    respond(connection.getOutputStream())
                    connection.getOutputStream().flush()
                    responded.countDown()
                    // The client closes the connection when its call is cancelled: EOF or reset.
                    try {
                        while (input.read() != -1) Unit
                    } catch (_: IOException) {
                    }
                    connectionClosed.countDown()
                }
            } catch (_: IOException) {
                // closed before a connection came
            }
        }
    }

    private fun readRequestHead(input: InputStream) {
        var last4 = 0
        while (last4 != 0x0d0a0d0a) {
            val b = input.read()
            if (b == -1) return
            last4 = (last4 shl 8) or b
        }
    }

    override fun close() = socket.close()
}

/**
 * Cancelling the coroutine of a call cancels the OkHttp Call: while waiting for the answer, and
 * while reading a body that is still arriving (a large data export on a slow network). The call
 * goes to a local server that stalls; the coroutine must end at once, the Call must report
 * isCanceled, and the server must see the connection closed.
 */
private suspend fun cancellation() {
    cancelInFlight("a call waiting for the response head") { }
    cancelInFlight("a call reading a response body") { out ->
        out.write("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"id\":1,".toByteArray())
    }
}

private suspend fun cancelInFlight(what: String, respond: (OutputStream) -> Unit) {
    StallingServer(respond).use { server ->
        // A read timeout far above the 2 s this check allows, but bounded so a failure ends.
        val factory = RecordingCallFactory(OkHttpClient.Builder().readTimeout(8, TimeUnit.SECONDS).build())
        val api = KeysApi(server.baseUrl, factory)
        // Its own scope, not a child of main's: if the cancellation does not work, the call's
        // late exception becomes a FAIL below instead of failing the whole run.
        val call = CoroutineScope(Dispatchers.Default).async { api.getCurrentKey() }
        val inFlight = runInterruptible(Dispatchers.IO) { server.responded.await(10, TimeUnit.SECONDS) }
        delay(300) // let the client take the head and start on the body
        val started = System.nanoTime()
        call.cancel()
        val ended = withTimeoutOrNull(5_000) { call.join() } != null
        val tookMs = (System.nanoTime() - started) / 1_000_000
        val closed = runInterruptible(Dispatchers.IO) { server.connectionClosed.await(5, TimeUnit.SECONDS) }
        val okhttpCall = factory.calls.singleOrNull()
        check("cancel $what: the coroutine ends within 2 s, cancelled", inFlight && ended && tookMs < 2_000 && call.isCancelled) {
            "in flight: $inFlight, ended: $ended after $tookMs ms, cancelled: ${call.isCancelled}"
        }
        check("cancel $what: the OkHttp Call is cancelled", okhttpCall?.isCanceled == true) { "calls: ${factory.calls}" }
        check("cancel $what: the connection to the server is closed", closed)
    }
}

/** Deactivation removes B from the listing. */
private suspend fun deactivation(s: Smoke) {
    s.devices.deleteDevice(s.deviceB)
    val afterDelete = s.devices.listDevices(s.group).devices
    check("after DELETE only A is listed", afterDelete.map { it.deviceId } == listOf(s.deviceA)) { afterDelete }
}
